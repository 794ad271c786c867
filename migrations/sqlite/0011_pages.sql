-- The pages read two kinds of events that are rare in the log: every
-- citizen's page looks for the guardianships and mandates that name the
-- person (whom they represent), and the staff dashboard counts the
-- applications filed in a period. Partial indexes hold just those rows, so
-- neither scans the log, and the other events cost them nothing.
CREATE INDEX events_relations ON events (type) WHERE type IN ('guardianship.established', 'mandate.granted');
CREATE INDEX events_applications ON events (occurred_at) WHERE type = 'application.submitted';
