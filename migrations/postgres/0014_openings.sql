-- Life situations that count from a birth date (school age, coming of age,
-- pension age) no longer keep a case from the birth record on: the engine
-- opens each case from the person's profile when its first step comes within
-- a horizon, reading the people born in a window of dates from an index.
-- A profile therefore remembers which birth record its birth date came from.

ALTER TABLE profiles ADD COLUMN birth_seq BIGINT;

-- A passing index, so that filling the column is one pass, not a scan of the
-- log per person.
CREATE INDEX events_births_tmp ON events (subject, seq) WHERE type = 'birth.registered';
UPDATE profiles SET birth_seq = (
    SELECT MAX(e.seq) FROM events e WHERE e.type = 'birth.registered' AND e.subject = profiles.subject
) WHERE kind = 'person';
DROP INDEX events_births_tmp;
UPDATE profiles SET doc = (doc::jsonb || jsonb_build_object('birth_seq', birth_seq))::text WHERE birth_seq IS NOT NULL;

CREATE INDEX profiles_births ON profiles (birth_date, subject) WHERE birth_seq IS NOT NULL AND death_date IS NULL;

-- How far ahead (ms) each life situation has opened its cases.
CREATE TABLE openings (
    life_situation TEXT   PRIMARY KEY,
    through        BIGINT NOT NULL
);
