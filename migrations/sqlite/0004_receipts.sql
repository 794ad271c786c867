-- Receipts: what a gateway later says of a message it accepted (an SMS
-- delivery report, an e-address "delivered" or "read"), one row each, so a
-- notice's whole story stays readable.

CREATE TABLE receipts (
    id          INTEGER PRIMARY KEY,
    notice_id   TEXT   NOT NULL,
    channel     TEXT   NOT NULL,
    provider_id TEXT,
    status      TEXT   NOT NULL,
    detail      TEXT,
    at          BIGINT NOT NULL
);
CREATE INDEX receipts_notice ON receipts (notice_id);
