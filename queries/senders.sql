-- Failures by sender.
-- Answers: which of the organisation's users cause the bounces, how
-- badly, and mostly why?
WITH scoped AS (
  SELECT sender, outcome, reason
  FROM deliveries
  WHERE org = {{org}} AND date BETWEEN {{from}} AND {{to}}
),
top_reason AS (
  SELECT sender, reason,
         row_number() OVER (PARTITION BY sender ORDER BY count(*) DESC, reason) AS rank
  FROM scoped WHERE outcome <> 'delivered'
  GROUP BY sender, reason
)
SELECT coalesce(s.sender, '(unknown)') AS sender,
       count(*) AS attempts,
       sum(CASE WHEN s.outcome IN ('bounced', 'expired') THEN 1 ELSE 0 END) AS bounced,
       sum(CASE WHEN s.outcome = 'deferred' THEN 1 ELSE 0 END) AS deferred,
       round(100.0 * sum(CASE WHEN s.outcome IN ('bounced', 'expired') THEN 1 ELSE 0 END)
             / nullif(sum(CASE WHEN s.outcome IN ('delivered', 'bounced', 'expired') THEN 1 ELSE 0 END), 0), 2)
         AS bounce_rate_pct,
       max(t.reason) AS top_reason
FROM scoped s
LEFT JOIN top_reason t ON (t.sender IS NOT DISTINCT FROM s.sender) AND t.rank = 1
GROUP BY s.sender
HAVING sum(CASE WHEN s.outcome <> 'delivered' THEN 1 ELSE 0 END) > 0
ORDER BY bounced DESC, deferred DESC, sender
LIMIT {{limit}};
