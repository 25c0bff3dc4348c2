-- Failures by recipient domain.
-- Answers: which receiving domains reject or defer the organisation's
-- mail, how much, and for what main reason?
WITH scoped AS (
  SELECT recipient_domain, outcome, category, reason
  FROM deliveries
  WHERE org = {{org}} AND date BETWEEN {{from}} AND {{to}}
),
top_reason AS (
  SELECT recipient_domain, category, reason,
         row_number() OVER (PARTITION BY recipient_domain ORDER BY count(*) DESC, category, reason) AS rank
  FROM scoped WHERE outcome <> 'delivered'
  GROUP BY recipient_domain, category, reason
)
SELECT s.recipient_domain,
       count(*) AS attempts,
       sum(CASE WHEN s.outcome <> 'delivered' THEN 1 ELSE 0 END) AS failures,
       round(100.0 * sum(CASE WHEN s.outcome IN ('bounced', 'expired') THEN 1 ELSE 0 END)
             / nullif(sum(CASE WHEN s.outcome IN ('delivered', 'bounced', 'expired') THEN 1 ELSE 0 END), 0), 2)
         AS bounce_rate_pct,
       max(t.category) AS top_category,
       max(t.reason) AS top_reason
FROM scoped s
LEFT JOIN top_reason t ON t.recipient_domain = s.recipient_domain AND t.rank = 1
GROUP BY s.recipient_domain
HAVING sum(CASE WHEN s.outcome <> 'delivered' THEN 1 ELSE 0 END) > 0
ORDER BY failures DESC, s.recipient_domain
LIMIT {{limit}};
