-- Suppression list.
-- Answers: which recipients hard-bounced because their address does not
-- exist, is malformed or is disabled, and should be removed from mailing
-- lists? One row per recipient, with its latest such bounce. Failures
-- caused on the sending side (a bad sender address, a policy refusal) are
-- not listed: the recipient is fine.
WITH bounces AS (
  SELECT recipient, event_time, reason, reply,
         row_number() OVER (PARTITION BY recipient ORDER BY event_time DESC, reason) AS latest
  FROM deliveries
  WHERE org = {{org}} AND date BETWEEN {{from}} AND {{to}}
    AND outcome IN ('bounced', 'expired')
    AND severity = 'hard'
    AND reason IN ('recipient_address_unknown', 'recipient_address_syntax',
                   'platform_recipient_not_exist', 'recipient_account_disabled')
)
SELECT recipient,
       count(*) AS hard_bounces,
       max(event_time) AS last_bounce,
       max(CASE WHEN latest = 1 THEN reason END) AS reason,
       max(CASE WHEN latest = 1 THEN reply END) AS last_reply
FROM bounces
GROUP BY recipient
ORDER BY recipient
LIMIT {{limit}};
