-- People and services that answer, what each round's stages are, and retractions.

-- Bearer tokens are shown once at creation; only their blake3 hash is kept.
CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('reviewer', 'admin', 'service')),
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
) STRICT;

-- Each stage of a round as the workflow declared it when the round was ranked, so answers
-- arriving through the API (callbacks, reviewers) are judged without re-reading the file.
CREATE TABLE round_stages (
    round_id  INTEGER NOT NULL REFERENCES rounds(id),
    stage     INTEGER NOT NULL,
    name      TEXT NOT NULL,
    kind      TEXT NOT NULL,
    quorum    INTEGER NOT NULL DEFAULT 1,
    rule      TEXT NOT NULL DEFAULT 'majority' CHECK (rule IN ('majority', 'escalate')),
    PRIMARY KEY (round_id, stage)
) STRICT;

-- A verdict found wrong after the fact. The verdict stays; this row says why it no longer
-- counts and which graph version took its edges out.
CREATE TABLE retractions (
    id          INTEGER PRIMARY KEY,
    verdict_id  INTEGER NOT NULL UNIQUE REFERENCES verdicts(id),
    reason      TEXT NOT NULL,
    by_user     TEXT NOT NULL,
    version     INTEGER REFERENCES graph_versions(id),
    outcome     TEXT NOT NULL,                  -- what happened to the hypothesis
    created_at  TEXT NOT NULL
) STRICT;

ALTER TABLE verdicts ADD COLUMN comment TEXT;
ALTER TABLE verdicts ADD COLUMN client TEXT;     -- where it came from: cli, api, plugin
ALTER TABLE verdicts ADD COLUMN role TEXT;       -- the reviewer's role when it was given

CREATE INDEX verdicts_hypothesis ON verdicts(hypothesis_id, stage);
