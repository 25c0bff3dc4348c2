-- Suppression list.
-- Answers: which recipients hard-bounced as unknown, disabled or not
-- existing, and should be removed from mailing lists? One row per
-- recipient, with the last reason and reply.
SELECT recipient,
       count(*) AS hard_bounces,
       max(event_time) AS last_bounce,
       max(reason) AS reason,
       max(reply) AS last_reply
FROM deliveries
WHERE org = {{org}} AND date BETWEEN {{from}} AND {{to}}
  AND outcome IN ('bounced', 'expired')
  AND severity = 'hard'
  AND (category = 'recipient_unknown'
       OR reason IN ('recipient_account_disabled', 'platform_recipient_not_exist'))
GROUP BY recipient
ORDER BY recipient
LIMIT {{limit}};
