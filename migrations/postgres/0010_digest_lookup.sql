-- A delivery report or an unsubscribe carries a digest's id where a single
-- notice's would be; finding its members must not scan every notice.
CREATE INDEX notices_digest ON notices (digest_id) WHERE digest_id IS NOT NULL;
