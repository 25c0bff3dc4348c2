-- Per organisation: attempts, outcomes, bounce rate (of final outcomes, as in
-- the overview report) and the top failure category.
-- Used by `bouncelens demo`; runs over the whole dataset.
WITH per_org AS (
  SELECT org_id,
         count(*) AS attempts,
         sum(CASE WHEN outcome = 'delivered' THEN 1 ELSE 0 END) AS delivered,
         sum(CASE WHEN outcome = 'deferred' THEN 1 ELSE 0 END) AS deferred,
         sum(CASE WHEN outcome = 'bounced' THEN 1 ELSE 0 END) AS bounced,
         sum(CASE WHEN outcome = 'expired' THEN 1 ELSE 0 END) AS expired
  FROM deliveries
  GROUP BY org_id
),
top_category AS (
  SELECT org_id, category, n,
         row_number() OVER (PARTITION BY org_id ORDER BY n DESC, category) AS rank
  FROM (SELECT org_id, category, count(*) AS n
        FROM deliveries
        WHERE outcome IN ('bounced', 'expired')
        GROUP BY org_id, category)
)
SELECT p.org_id AS organisation,
       p.attempts,
       p.delivered,
       p.deferred,
       p.bounced,
       p.expired,
       round(100.0 * (p.bounced + p.expired) / nullif(p.delivered + p.bounced + p.expired, 0), 2)
         AS bounce_rate_pct,
       t.category AS top_bounce_category
FROM per_org p
LEFT JOIN top_category t ON t.org_id = p.org_id AND t.rank = 1
ORDER BY p.bounced + p.expired DESC, p.attempts DESC, p.org_id
LIMIT 20;
