-- The pipeline's tables: event log, quarantine, connector cursors, profiles,
-- cases, notices (the outbox), drafts, delivery attempts and rule outcomes.
-- Times are milliseconds since the Unix epoch (UTC) so that one query text
-- works on SQLite and PostgreSQL alike; JSON is kept as TEXT for the same reason.

CREATE TABLE events (
    seq          INTEGER PRIMARY KEY,
    source       TEXT    NOT NULL,
    external_id  TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    occurred_at  BIGINT  NOT NULL,
    received_at  BIGINT  NOT NULL,
    data         TEXT    NOT NULL,
    processed_at BIGINT,
    UNIQUE (source, external_id)
);
CREATE INDEX events_pending ON events (seq) WHERE processed_at IS NULL;

CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY,
    source      TEXT    NOT NULL,
    location    TEXT    NOT NULL,
    raw         TEXT    NOT NULL,
    raw_hash    TEXT    NOT NULL,
    field       TEXT,
    error       TEXT    NOT NULL,
    received_at BIGINT  NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'held',
    attempts    BIGINT  NOT NULL DEFAULT 0,
    event_seq   BIGINT,
    UNIQUE (source, raw_hash)
);

CREATE TABLE connector_state (
    source       TEXT   PRIMARY KEY,
    cursor       TEXT,
    last_poll_at BIGINT,
    last_error   TEXT,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE profiles (
    subject    TEXT   PRIMARY KEY,
    kind       TEXT   NOT NULL,
    birth_date TEXT,
    death_date TEXT,
    mother     TEXT,
    father     TEXT,
    doc        TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE cases (
    id             TEXT   PRIMARY KEY,
    life_situation TEXT   NOT NULL,
    version        BIGINT NOT NULL,
    subject        TEXT   NOT NULL,
    fact           TEXT   NOT NULL,
    state          TEXT   NOT NULL DEFAULT 'open',
    trigger_seq    BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE notices (
    id             TEXT   PRIMARY KEY,
    case_id        TEXT   NOT NULL,
    life_situation TEXT   NOT NULL,
    version        BIGINT NOT NULL,
    step           TEXT   NOT NULL,
    recipient      TEXT   NOT NULL,
    purpose        TEXT   NOT NULL,
    template       TEXT   NOT NULL,
    data           TEXT   NOT NULL,
    draft_ref      TEXT,
    due_at         BIGINT NOT NULL,
    available_at   BIGINT NOT NULL,
    state          TEXT   NOT NULL DEFAULT 'pending',
    attempts       BIGINT NOT NULL DEFAULT 0,
    lease_until    BIGINT,
    channel        TEXT,
    last_error     TEXT,
    created_at     BIGINT NOT NULL,
    sent_at        BIGINT
);
CREATE INDEX notices_available ON notices (available_at) WHERE state = 'pending';
CREATE INDEX notices_leased ON notices (lease_until) WHERE state = 'sending';

CREATE TABLE drafts (
    ref        TEXT   PRIMARY KEY,
    case_id    TEXT   NOT NULL,
    service_id TEXT   NOT NULL,
    applicant  TEXT   NOT NULL,
    fields     TEXT   NOT NULL,
    status     TEXT   NOT NULL DEFAULT 'offered',
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE deliveries (
    id           INTEGER PRIMARY KEY,
    notice_id    TEXT   NOT NULL,
    channel      TEXT   NOT NULL,
    attempted_at BIGINT NOT NULL,
    outcome      TEXT   NOT NULL,
    provider_id  TEXT,
    error        TEXT
);
CREATE INDEX deliveries_notice ON deliveries (notice_id);

CREATE TABLE event_outcomes (
    id             INTEGER PRIMARY KEY,
    event_seq      BIGINT NOT NULL,
    life_situation TEXT   NOT NULL,
    step           TEXT,
    outcome        TEXT   NOT NULL,
    detail         TEXT   NOT NULL,
    at             BIGINT NOT NULL
);
CREATE INDEX event_outcomes_event ON event_outcomes (event_seq);
