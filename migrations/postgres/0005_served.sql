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

-- Pacing: 1 for a notice of an urgent or legal-effect step, which is never
-- digested, capped or staggered; the digest a notice went out in, fixed
-- when it was claimed so a resend after a crash carries the same id; and the
-- tail of the current staggered wave, so waves queue behind each other
-- whichever process spreads them.
ALTER TABLE notices ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
ALTER TABLE notices ADD COLUMN digest_id TEXT;
-- 1 once a staggered wave gave the notice its slot, so it is not moved again.
ALTER TABLE notices ADD COLUMN slotted BIGINT NOT NULL DEFAULT 0;
CREATE TABLE stagger (
    id      BIGINT PRIMARY KEY,
    tail_at BIGINT NOT NULL
);
-- A withdrawal looks for the notices already with a gateway by recipient or
-- case (few rows at any moment), and a frequency cap counts a person's
-- recent sends.
CREATE INDEX notices_sending_recipient ON notices (recipient) WHERE state = 'sending';
CREATE INDEX notices_sending_case ON notices (case_id) WHERE state = 'sending';
CREATE INDEX notices_sent_recipient ON notices (recipient, sent_at) WHERE state = 'sent';
