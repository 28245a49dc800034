-- The scheduler's durable memory: one row per schedule slot (written before the work starts,
-- so a crash can never fire a slot twice) and one lease per workflow (so two daemons on one
-- database never run the same workflow at once).

CREATE TABLE fires (
    workflow      TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('round', 'retrain')),
    scheduled_at  TEXT NOT NULL,                 -- RFC 3339, UTC, whole seconds
    status        TEXT NOT NULL CHECK (status IN ('started', 'done', 'skipped', 'failed')),
    reason        TEXT,                          -- why skipped or failed
    holder        TEXT NOT NULL,                 -- the daemon that recorded it
    fired_at      TEXT NOT NULL,                 -- when it was recorded
    round_id      INTEGER REFERENCES rounds(id),
    PRIMARY KEY (workflow, kind, scheduled_at)
) STRICT;

CREATE TABLE leases (
    workflow    TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  TEXT NOT NULL                    -- RFC 3339; free after it
) STRICT;

-- Models trained by a workflow (its rounds or its retrain schedule): the next round scores
-- with the newest of them.
ALTER TABLE models ADD COLUMN workflow TEXT;
