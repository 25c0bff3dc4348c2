-- Failures by category, with what to do.
-- Answers: why did the organisation's mail fail, in the taxonomy's
-- categories, and what should the mail admin do about the biggest ones?
-- The advice is that of the category's most frequent reason.
WITH failures AS (
  SELECT category, reason, severity
  FROM deliveries
  WHERE org = {{org}} AND date BETWEEN {{from}} AND {{to}} AND outcome <> 'delivered'
),
per_reason AS (
  SELECT category, reason, count(*) AS n,
         row_number() OVER (PARTITION BY category ORDER BY count(*) DESC, reason) AS rank
  FROM failures GROUP BY category, reason
)
SELECT f.category,
       count(*) AS failures,
       round(100.0 * count(*) / sum(count(*)) OVER (), 2) AS share_pct,
       sum(CASE WHEN f.severity = 'hard' THEN 1 ELSE 0 END) AS hard,
       sum(CASE WHEN f.severity = 'soft' THEN 1 ELSE 0 END) AS soft,
       max(r.reason) AS top_reason,
       max(CASE WHEN {{lang}} = 'zh' THEN t.advice_zh ELSE t.advice_en END) AS advice
FROM failures f
LEFT JOIN per_reason r ON r.category = f.category AND r.rank = 1
LEFT JOIN taxonomy_reasons t ON t.reason = r.reason
GROUP BY f.category
ORDER BY failures DESC, f.category
LIMIT {{limit}};
