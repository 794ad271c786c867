-- Chains: a case keeps the plan of its timed steps (JSON: step → due time,
-- state, reason) and the earliest pending due time, which is the index of
-- what is due; events that concern open cases find them by subject and by
-- their drafts; deaths and cancellations find queued notices by case and
-- by recipient.

ALTER TABLE cases ADD COLUMN started_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cases ADD COLUMN anchor TEXT;
ALTER TABLE cases ADD COLUMN plan TEXT NOT NULL DEFAULT '{}';
ALTER TABLE cases ADD COLUMN next_due_at BIGINT;
ALTER TABLE cases ADD COLUMN closed_reason TEXT;

CREATE INDEX cases_due ON cases (next_due_at) WHERE next_due_at IS NOT NULL;
CREATE INDEX cases_open_subject ON cases (subject) WHERE state = 'open';
CREATE INDEX drafts_applicant ON drafts (applicant);
CREATE INDEX notices_pending_case ON notices (case_id) WHERE state = 'pending';
CREATE INDEX notices_pending_recipient ON notices (recipient) WHERE state = 'pending';
