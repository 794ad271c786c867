-- Explanation and audit. A notice keeps the trace of how it was made (which
-- rule and version, on which event, for whom and through whom); what
-- delivery later decided is in the audit log, which also holds consent
-- changes, withdrawals and staff actions. The log is append-only and chained
-- by SHA-256 per writer (a process's lane), not globally, so writers never
-- wait on each other; `audit_chains` keeps each chain's head so that a
-- record deleted at the end is found too. Persons appear in the log only as
-- keyed pseudonyms: erasing their data at the end of its retention leaves the
-- chain intact.

ALTER TABLE notices ADD COLUMN trace TEXT;
ALTER TABLE notices ADD COLUMN erased_at BIGINT;
ALTER TABLE drafts ADD COLUMN erased_at BIGINT;

CREATE TABLE audit_log (
    chain       TEXT   NOT NULL,
    seq         BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    kind        TEXT   NOT NULL,
    purpose     TEXT,
    subject_ref TEXT,
    notice_id   TEXT,
    record      TEXT   NOT NULL,
    prev_hash   TEXT   NOT NULL,
    hash        TEXT   NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX audit_log_notice ON audit_log (notice_id) WHERE notice_id IS NOT NULL;
CREATE INDEX audit_log_purpose ON audit_log (purpose, at);
CREATE INDEX audit_log_subject ON audit_log (subject_ref) WHERE subject_ref IS NOT NULL;

CREATE TABLE audit_chains (
    chain      TEXT   PRIMARY KEY,
    writer     TEXT   NOT NULL,
    started_at BIGINT NOT NULL,
    head_seq   BIGINT NOT NULL,
    head_hash  TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX notices_erasable ON notices (purpose, created_at) WHERE erased_at IS NULL;
