-- Identity-document expiry (passport_expiry) no longer keeps a case from the
-- document's issue on, for up to ten years: the engine opens each case when
-- its first reminder comes within the horizon, reading the documents that
-- expire in a window of dates from this index, and the holder's profile for
-- whether the document is still in force. The engine adds a row for each
-- document.issued it processes, in its batch's transaction; the ones it has
-- processed already are filled in here. (An expression index over the log
-- did the same, but grew with every feed commit rather than in the engine's
-- larger batches: it doubled a backfill's load time on disk.)

CREATE TABLE document_expiry (
    expires TEXT   NOT NULL,
    seq     BIGINT NOT NULL,
    subject TEXT   NOT NULL,
    PRIMARY KEY (expires, seq)
) WITHOUT ROWID;

INSERT INTO document_expiry (expires, seq, subject)
SELECT json_extract(data, '$.expires'), seq, subject FROM events
WHERE type = 'document.issued' AND processed_at IS NOT NULL AND json_extract(data, '$.expires') IS NOT NULL;
