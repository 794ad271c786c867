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

-- A withdrawal (refusal, death, the case's end) that came while the notice
-- was already handed to a gateway: that send cannot be recalled, but if it
-- does not go through, the notice ends cancelled with this reason instead of
-- being retried.
ALTER TABLE notices ADD COLUMN withdrawn TEXT;
