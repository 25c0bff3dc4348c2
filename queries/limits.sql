-- Sending-limit breaches.
-- Answers: which users went over the platform's limits (1,000 messages a
-- day, 500 in any 15 minutes), which messages had more than 400
-- recipients, and when did the organisation hit its own outgoing limit
-- (`org out rcpt count is exceeded`)? A message counts once, by its first
-- attempt, on the day it was first sent; the 15-minute window slides over
-- every message.
--
-- The data is read once for the three per-user and per-message limits (a
-- CTE named twice is computed twice).
WITH messages AS (
  SELECT sender, date, event_time, message_id, nrcpt
  FROM deliveries
  WHERE org = {{org}} AND date BETWEEN {{from}} AND {{to}}
    AND coalesce(attempt, 1) = 1 AND sender IS NOT NULL
),
-- A message without a Message-ID is told apart by its time.
distinct_messages AS (
  SELECT sender, min(CAST(date AS DATE)) AS day, message_id,
         min(event_time) AS sent_at, max(nrcpt) AS nrcpt
  FROM messages
  GROUP BY sender, message_id, CASE WHEN message_id IS NULL THEN event_time END
),
-- The messages in the 15 minutes up to each message, without a RANGE
-- frame (which costs far more): each message also leaves a probe 15
-- minutes earlier. Taken in order of sender, time, and probe before
-- message at the same instant, the probes and the messages of a sender
-- pair up in order, so at a probe (probes passed) - (messages passed) is
-- the count of the sender's messages from its instant up to its message.
-- The running difference needs no PARTITION BY: each sender adds as many
-- probes as messages, so it is back to zero where the next sender starts.
points AS (
  SELECT sender, day, is_message, message_id, nrcpt,
         CASE WHEN is_message = 1 THEN sent_at ELSE sent_at - INTERVAL '15 minutes' END AS t
  FROM distinct_messages CROSS JOIN (VALUES (0), (1)) AS kinds(is_message)
),
passed AS (
  SELECT sender, day, is_message, nrcpt,
         sum(1 - 2 * is_message) OVER (ORDER BY sender, t, is_message ROWS UNBOUNDED PRECEDING) AS in_window,
         CASE WHEN is_message = 1 AND nrcpt > 400
              THEN sender || ' ' || coalesce(message_id, CAST(t AS VARCHAR)) END AS wide_message
  FROM points
),
-- Per sender-day, and per message above the recipient limit, in one pass.
grouped AS (
  SELECT sender, day, wide_message, grouping(wide_message) AS per_day,
         sum(is_message) AS messages,
         max(CASE WHEN is_message = 0 THEN in_window END) AS peak,
         max(nrcpt) AS nrcpt
  FROM passed
  GROUP BY GROUPING SETS ((sender, day), (sender, day, wide_message))
),
-- Each group gives a row for each limit it broke.
per_message AS (
  SELECT CASE k WHEN 1 THEN 'user_daily_messages'
                WHEN 2 THEN 'user_15_minute_messages'
                ELSE 'message_recipients' END AS kind,
         CASE WHEN k = 3 THEN wide_message ELSE sender END AS subject, day,
         CASE k WHEN 1 THEN messages WHEN 2 THEN peak ELSE nrcpt END AS value,
         CASE k WHEN 1 THEN 1000 WHEN 2 THEN 500 ELSE 400 END AS limit_value
  FROM grouped CROSS JOIN (VALUES (1), (2), (3)) AS limits(k)
  WHERE (k = 1 AND per_day = 1 AND messages > 1000)
     OR (k = 2 AND per_day = 1 AND peak > 500)
     OR (k = 3 AND per_day = 0 AND wide_message IS NOT NULL)
),
org_limit AS (
  SELECT 'org_outgoing_limit' AS kind, {{org}} AS subject, CAST(date AS DATE) AS day, count(*) AS value, 0 AS limit_value
  FROM deliveries
  WHERE org = {{org}} AND date BETWEEN {{from}} AND {{to}} AND reason = 'org_send_limit_exceeded'
  GROUP BY CAST(date AS DATE)
)
SELECT kind, subject, CAST(day AS VARCHAR) AS date, CAST(value AS BIGINT) AS value, CAST(limit_value AS BIGINT) AS limit_value
FROM (SELECT * FROM per_message UNION ALL SELECT * FROM org_limit)
ORDER BY kind, date, value DESC, subject
LIMIT {{limit}};
