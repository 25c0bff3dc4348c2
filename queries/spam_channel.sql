-- CAC spam-channel bounces per day.
-- Answers: how much of the organisation's mail was routed to the CAC spam
-- channel each day, domestic (SDN3/SDN4) or overseas (SDN13/SDN14) or
-- SDN51, and which senders are affected? Each needs a support ticket with
-- the message content for review.
SELECT date,
       CASE reason
         WHEN 'spam_channel_domestic' THEN 'domestic'
         WHEN 'spam_channel_overseas' THEN 'overseas'
         ELSE 'sdn51'
       END AS channel,
       upper(matched) AS code,
       count(*) AS bounces,
       count(DISTINCT sender) AS senders,
       count(DISTINCT recipient) AS recipients
FROM deliveries
WHERE org = {{org}} AND date BETWEEN {{from}} AND {{to}} AND category = 'spam_channel'
GROUP BY date, reason, upper(matched)
ORDER BY date, channel, code;
