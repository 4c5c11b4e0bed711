-- Events in commit order. Event ids come from an identity column, so a transaction that took a
-- lower id can commit after one that took a higher id; a reader resuming "after id N" would miss
-- it. commit_seq is stamped at commit time (a deferred constraint trigger) under a transaction
-- advisory lock, which is released only after the commit is visible: when a reader sees
-- commit_seq S, every lower commit_seq is visible too. Live pages resume by commit_seq.

ALTER TABLE events ADD COLUMN commit_seq bigint;
CREATE SEQUENCE events_commit_seq;
UPDATE events SET commit_seq = id;
SELECT setval('events_commit_seq', coalesce((SELECT max(id) FROM events), 0) + 1, false);
CREATE UNIQUE INDEX events_commit_seq_key ON events (commit_seq);

CREATE FUNCTION events_stamp_commit_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- one committer at a time from here to the end of its commit (a fixed key of its own)
    PERFORM pg_advisory_xact_lock(x'0f1e1d0e7e475300'::bigint);
    UPDATE events SET commit_seq = nextval('events_commit_seq') WHERE id = NEW.id;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER events_commit_seq AFTER INSERT ON events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION events_stamp_commit_seq();
