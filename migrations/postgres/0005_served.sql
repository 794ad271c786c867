-- e-address receipts: a sent document's legal "served" day (the second
-- business day after sending), the gateway's id of the message, how far it
-- has got (accepted, delivered, read), and when to ask the gateway next.
-- The poll time is NULL once the message is read or the polling gave up, so
-- the partial index holds only the messages still being followed.

ALTER TABLE notices ADD COLUMN provider_id TEXT;
ALTER TABLE notices ADD COLUMN served_on TEXT;
ALTER TABLE notices ADD COLUMN receipt_status TEXT;
ALTER TABLE notices ADD COLUMN receipt_poll_at BIGINT;
CREATE INDEX notices_receipt_poll ON notices (receipt_poll_at) WHERE receipt_poll_at IS NOT NULL;
