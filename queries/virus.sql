-- Virus events.
-- Answers: which messages were refused because a virus was found, from
-- which senders (whose machines should be scanned) to whom?
SELECT event_time,
       sender,
       recipient,
       message_id,
       remote_host,
       matched,
       reply
FROM deliveries
WHERE org = {{org}} AND date BETWEEN {{from}} AND {{to}} AND category = 'virus'
ORDER BY event_time, sender, recipient
LIMIT {{limit}};
