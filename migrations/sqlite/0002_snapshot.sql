-- The Enterprise Register's open-data snapshot (CONTRACTS.md §2): every file
-- seen, with its verdict, and a compact fingerprint per company of the last
-- snapshot applied, which the next file is diffed against.

-- One row per file (by content and the day it describes) a snapshot source has seen.
CREATE TABLE snapshots (
    id            INTEGER PRIMARY KEY,
    source        TEXT    NOT NULL,
    sha256        TEXT    NOT NULL,
    snapshot_date TEXT    NOT NULL,
    origin        TEXT    NOT NULL,
    file          TEXT    NOT NULL,
    bytes         BIGINT  NOT NULL,
    etag          TEXT,
    last_modified TEXT,
    baseline      BIGINT  NOT NULL DEFAULT 0,
    state         TEXT    NOT NULL,
    reason        TEXT,
    stats         TEXT,
    received_at   BIGINT  NOT NULL,
    approved_at   BIGINT,
    applied_at    BIGINT,
    UNIQUE (source, sha256, snapshot_date)
);

-- The last applied snapshot, per company: a 64-bit fingerprint of what the
-- diff looks at (name, address, terminated/closed), and the name and address
-- themselves so that renamed/moved events can say what they were before.
CREATE TABLE snapshot_companies (
    source      TEXT    NOT NULL,
    regcode     TEXT    NOT NULL,
    fingerprint BIGINT  NOT NULL,
    name        TEXT    NOT NULL,
    address     TEXT    NOT NULL,
    gone_since  BIGINT,
    snapshot_id BIGINT  NOT NULL,
    PRIMARY KEY (source, regcode)
);
