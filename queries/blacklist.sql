-- Blacklisting: sending IPs versus sender addresses.
-- Answers: was it our sending IP that is on a blocklist (ask the listed
-- receiver or blocklist for delisting) or a sender address the recipient
-- blocks (ask the recipient to allow it), and at which receiving hosts?
SELECT CASE WHEN reason = 'sender_address_blocked' THEN 'sender_address' ELSE 'sending_ip' END AS blocked,
       coalesce(CASE WHEN reason = 'sender_address_blocked' THEN sender ELSE sending_ip END, '(not recorded)') AS subject,
       reason,
       coalesce(remote_host, '(unknown)') AS receiving_host,
       recipient_domain,
       count(*) AS bounces,
       min(event_time) AS first_seen,
       max(event_time) AS last_seen
FROM deliveries
WHERE org = {{org}} AND date BETWEEN {{from}} AND {{to}} AND category = 'blacklisted'
GROUP BY 1, 2, reason, 4, recipient_domain
ORDER BY bounces DESC, blocked, subject, receiving_host, recipient_domain
LIMIT {{limit}};
