-- Failures by reason, with what to do.
-- Answers: which precise reasons did the receiving servers give, how often,
-- which phrase or code decided it, and what is the advice for each?
SELECT d.category,
       d.reason,
       CASE WHEN {{lang}} = 'zh' THEN t.label_zh ELSE t.label_en END AS label,
       count(*) AS failures,
       sum(CASE WHEN d.severity = 'hard' THEN 1 ELSE 0 END) AS hard,
       count(DISTINCT d.recipient) AS recipients,
       max(d.matched) AS example_match,
       CASE WHEN {{lang}} = 'zh' THEN t.advice_zh ELSE t.advice_en END AS advice
FROM deliveries d
LEFT JOIN taxonomy_reasons t ON t.reason = d.reason
WHERE d.org = {{org}} AND d.date BETWEEN {{from}} AND {{to}} AND d.outcome <> 'delivered'
GROUP BY d.category, d.reason, t.label_en, t.label_zh, t.advice_en, t.advice_zh
ORDER BY failures DESC, d.category, d.reason
LIMIT {{limit}};
