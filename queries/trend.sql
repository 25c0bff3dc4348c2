-- Bounce-rate trend.
-- Answers: is the organisation's bounce rate getting better or worse? Per
-- day, the bounce rate, its change against the day before (even for the
-- first day shown), and against the average of the whole previous period
-- of the same length.
-- Counted per (date, outcome) first, and the previous period's rate taken
-- with a window over the same days, so the data is read once.
WITH counts AS (
  SELECT date, outcome, count(*) AS n
  FROM deliveries
  WHERE org = {{org}}
    AND date BETWEEN {{previous_from}} AND {{to}}
  GROUP BY date, outcome
),
daily AS (
  SELECT date,
         sum(CASE WHEN outcome IN ('bounced', 'expired') THEN n ELSE 0 END) AS failed,
         sum(CASE WHEN outcome IN ('delivered', 'bounced', 'expired') THEN n ELSE 0 END) AS final
  FROM counts
  GROUP BY date
),
rated AS (
  SELECT date, failed, final, 100.0 * failed / nullif(final, 0) AS rate,
         100.0 * failed / nullif(final, 0)
           - lag(100.0 * failed / nullif(final, 0)) OVER (ORDER BY date) AS change_vs_previous_day,
         100.0 * sum(CASE WHEN date < {{from}} THEN failed END) OVER ()
           / nullif(sum(CASE WHEN date < {{from}} THEN final END) OVER (), 0) AS previous_rate
  FROM daily
)
SELECT date,
       final AS final_outcomes,
       failed AS bounced,
       round(rate, 2) AS bounce_rate_pct,
       round(change_vs_previous_day, 2) AS change_vs_previous_day,
       round(rate - previous_rate, 2) AS change_vs_previous_period
FROM rated
WHERE date >= {{from}}
ORDER BY date;
