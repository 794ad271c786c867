-- The engine no longer looks for the cases of a subject it holds no profile
-- of, because the batch that makes a case now always stores its subject's
-- profile. Cases made before that, by an event that changed nothing in a
-- profile (a company's liquidation with no registration before it), get an
-- empty profile here so they are still found.
INSERT INTO profiles (subject, kind, doc, updated_at)
SELECT subject, kind, json_build_object('subject', subject, 'kind', kind)::text, 0
FROM (SELECT DISTINCT c.subject, CASE WHEN c.subject LIKE '%-%' THEN 'person' ELSE 'company' END AS kind
      FROM cases c
      WHERE NOT EXISTS (SELECT 1 FROM profiles p WHERE p.subject = c.subject)) AS missing;
