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
-- A message without a Message-ID is told apart by its time. The day is
-- grouped as a DATE: grouping by the partition's text costs several times
-- more.
distinct_messages AS (
  SELECT sender, CAST(date AS DATE) AS day, message_id, min(event_time) AS sent_at, max(nrcpt) AS nrcpt
  FROM messages
  GROUP BY sender, CAST(date AS DATE), message_id, CASE WHEN message_id IS NULL THEN event_time END
),
windowed AS (
  SELECT sender, day,
         count(*) OVER (PARTITION BY sender ORDER BY sent_at
                        RANGE BETWEEN INTERVAL '15 minutes' PRECEDING AND CURRENT ROW) AS in_window
  FROM distinct_messages
),
sender_days AS (
  SELECT sender, day, count(*) AS messages, max(in_window) AS peak
  FROM windowed GROUP BY sender, day
),
-- Both per-user limits come from the one pass above (a CTE named twice
-- would be computed twice): each sender-day gives a row for each limit
-- it broke.
per_user AS (
  SELECT CASE WHEN k = 1 THEN 'user_daily_messages' ELSE 'user_15_minute_messages' END AS kind,
         sender AS subject, day,
         CASE WHEN k = 1 THEN messages ELSE peak END AS value,
         CASE WHEN k = 1 THEN 1000 ELSE 500 END AS limit_value
  FROM sender_days CROSS JOIN (VALUES (1), (2)) AS limits(k)
  WHERE (k = 1 AND messages > 1000) OR (k = 2 AND peak > 500)
),
-- The recipient count is the message's own, so only rows above the limit
-- need reading.
wide AS (
  SELECT 'message_recipients' AS kind,
         sender || ' ' || coalesce(message_id, CAST(min(event_time) AS VARCHAR)) AS subject,
         CAST(date AS DATE) AS day, max(nrcpt) AS value, 400 AS limit_value
  FROM messages
  WHERE nrcpt > 400
  GROUP BY sender, CAST(date AS DATE), message_id, CASE WHEN message_id IS NULL THEN event_time END
),
org_limit AS (
  SELECT 'org_outgoing_limit' AS kind, {{org}} AS subject, CAST(date AS DATE) AS day, count(*) AS value, 0 AS limit_value
  FROM deliveries
  WHERE org = {{org}} AND date BETWEEN {{from}} AND {{to}} AND reason = 'org_send_limit_exceeded'
  GROUP BY CAST(date AS DATE)
)
SELECT kind, subject, CAST(day AS VARCHAR) AS date, CAST(value AS BIGINT) AS value, CAST(limit_value AS BIGINT) AS limit_value
FROM (SELECT * FROM per_user UNION ALL SELECT * FROM wide UNION ALL SELECT * FROM org_limit)
ORDER BY kind, date, value DESC, subject
LIMIT {{limit}};
