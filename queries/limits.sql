-- Sending-limit breaches.
-- Answers: which users went over the platform's limits (1,000 messages a
-- day, 500 in any 15 minutes), which messages had more than 400
-- recipients, and when did the organisation hit its own outgoing limit
-- (`org out rcpt count is exceeded`)? A message counts once, by its first
-- attempt; the 15-minute window slides over every message.
WITH messages AS (
  SELECT sender, date, event_time, message_id, nrcpt
  FROM deliveries
  WHERE org = {{org}} AND date BETWEEN {{from}} AND {{to}}
    AND coalesce(attempt, 1) = 1 AND sender IS NOT NULL
),
distinct_messages AS (
  SELECT sender, date, coalesce(message_id, CAST(event_time AS VARCHAR)) AS message, min(event_time) AS sent_at, max(nrcpt) AS nrcpt
  FROM messages GROUP BY sender, date, coalesce(message_id, CAST(event_time AS VARCHAR))
),
daily AS (
  SELECT 'user_daily_messages' AS kind, sender AS subject, date, count(*) AS value, 1000 AS limit_value
  FROM distinct_messages GROUP BY sender, date HAVING count(*) > 1000
),
windowed AS (
  SELECT sender, date,
         count(*) OVER (PARTITION BY sender ORDER BY sent_at
                        RANGE BETWEEN INTERVAL '15 minutes' PRECEDING AND CURRENT ROW) AS in_window
  FROM distinct_messages
),
burst AS (
  SELECT 'user_15_minute_messages' AS kind, sender AS subject, date, max(in_window) AS value, 500 AS limit_value
  FROM windowed GROUP BY sender, date HAVING max(in_window) > 500
),
wide AS (
  SELECT 'message_recipients' AS kind, sender || ' ' || message AS subject, date, max(nrcpt) AS value, 400 AS limit_value
  FROM distinct_messages WHERE nrcpt > 400 GROUP BY sender, message, date
),
org_limit AS (
  SELECT 'org_outgoing_limit' AS kind, {{org}} AS subject, date, count(*) AS value, 0 AS limit_value
  FROM deliveries
  WHERE org = {{org}} AND date BETWEEN {{from}} AND {{to}} AND reason = 'org_send_limit_exceeded'
  GROUP BY date
)
SELECT kind, subject, date, CAST(value AS BIGINT) AS value, CAST(limit_value AS BIGINT) AS limit_value
FROM (SELECT * FROM daily UNION ALL SELECT * FROM burst UNION ALL SELECT * FROM wide UNION ALL SELECT * FROM org_limit)
ORDER BY kind, date, value DESC, subject
LIMIT {{limit}};
