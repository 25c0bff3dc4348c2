-- Bounce-rate trend.
-- Answers: is the organisation's bounce rate getting better or worse? Per
-- day, the bounce rate, its change against the day before (even for the
-- first day shown), and against the average of the whole previous period
-- of the same length.
WITH daily AS (
  SELECT date,
         sum(CASE WHEN outcome IN ('bounced', 'expired') THEN 1 ELSE 0 END) AS failed,
         sum(CASE WHEN outcome IN ('delivered', 'bounced', 'expired') THEN 1 ELSE 0 END) AS final
  FROM deliveries
  WHERE org = {{org}}
    AND date BETWEEN {{previous_from}} AND {{to}}
  GROUP BY date
),
rated AS (
  SELECT date, failed, final, 100.0 * failed / nullif(final, 0) AS rate,
         100.0 * failed / nullif(final, 0)
           - lag(100.0 * failed / nullif(final, 0)) OVER (ORDER BY date) AS change_vs_previous_day
  FROM daily
),
previous AS (
  SELECT 100.0 * sum(failed) / nullif(sum(final), 0) AS rate FROM rated WHERE date < {{from}}
)
SELECT r.date,
       r.final AS final_outcomes,
       r.failed AS bounced,
       round(r.rate, 2) AS bounce_rate_pct,
       round(r.change_vs_previous_day, 2) AS change_vs_previous_day,
       round(r.rate - p.rate, 2) AS change_vs_previous_period
FROM rated r CROSS JOIN previous p
WHERE r.date >= {{from}}
ORDER BY r.date;
