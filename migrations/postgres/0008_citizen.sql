-- The citizen API: when a draft last changed status (opened, submitted,
-- declined), so that a submission's receipt and the staff's take-up figures
-- can say when. Corrections are kept in the draft's fields themselves (the
-- prefilled value beside the applicant's), so that retention erases them
-- with the rest of the draft.
ALTER TABLE drafts ADD COLUMN status_at BIGINT;
