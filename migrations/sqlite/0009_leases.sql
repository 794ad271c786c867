-- Work only one process may do at a time (a connector's polling, rule
-- evaluation): the process holding the lease does it and renews it; when it
-- dies the lease lapses and another process takes over. No coordinator of
-- our own, only the shared database.

CREATE TABLE leases (
    name     TEXT   PRIMARY KEY,
    holder   TEXT   NOT NULL,
    until_at BIGINT NOT NULL
);
