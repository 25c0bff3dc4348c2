-- Delivery overview per day.
-- Answers: how many delivery attempts did the organisation make each day,
-- how did they end, what share bounced, and how much of it was hard
-- (permanent) versus soft (temporary)?
-- bounce_rate_pct = (bounced + expired) / (delivered + bounced + expired):
-- final outcomes only, so retries of deferred mail do not dilute it.
-- Counted per (date, outcome, severity) first, then pivoted: a handful of
-- groups instead of nine conditional sums over every row.
WITH counts AS (
  SELECT date, outcome, severity, count(*) AS n
  FROM deliveries
  WHERE org = {{org}} AND date BETWEEN {{from}} AND {{to}}
  GROUP BY date, outcome, severity
)
SELECT date,
       sum(n) AS attempts,
       sum(CASE WHEN outcome = 'delivered' THEN n ELSE 0 END) AS delivered,
       sum(CASE WHEN outcome = 'deferred' THEN n ELSE 0 END) AS deferred,
       sum(CASE WHEN outcome = 'bounced' THEN n ELSE 0 END) AS bounced,
       sum(CASE WHEN outcome = 'expired' THEN n ELSE 0 END) AS expired,
       round(100.0 * sum(CASE WHEN outcome IN ('bounced', 'expired') THEN n ELSE 0 END)
             / nullif(sum(CASE WHEN outcome IN ('delivered', 'bounced', 'expired') THEN n ELSE 0 END), 0), 2)
         AS bounce_rate_pct,
       sum(CASE WHEN outcome <> 'delivered' AND severity = 'hard' THEN n ELSE 0 END) AS hard_failures,
       sum(CASE WHEN outcome <> 'delivered' AND severity = 'soft' THEN n ELSE 0 END) AS soft_failures
FROM counts
GROUP BY date
ORDER BY date;
