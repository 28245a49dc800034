-- Rows a user chose in `hypograph ask` and submitted to a workflow. A submission's new
-- entities and asserted edges are a graph version of its own (`version`); its chosen
-- predictions and claims wait here as pinned candidates until the workflow's next round
-- takes them into its batch, in the transaction that stores the batch.

CREATE TABLE ask_submissions (
    id             INTEGER PRIMARY KEY,
    workflow       TEXT NOT NULL,                    -- the workflow's name, as rounds record it
    asker          TEXT NOT NULL,                    -- the user name of the token holder
    prompt         TEXT NOT NULL,                    -- JSON, as the asker wrote it
    version        INTEGER REFERENCES graph_versions(id),  -- the version it wrote; NULL if none
    -- HEAD once it was stored: a round on an older graph does not take its rows (it may
    -- lack their entities), so a resumed round sees the same rows.
    graph_version  INTEGER NOT NULL REFERENCES graph_versions(id),
    created_at     TEXT NOT NULL
) STRICT;

-- `waiting` until a round ranks; then `claimed` (the round's hypothesis, which carries the
-- verdicts from there on) or `skipped` with the reason (the triple became an edge or a
-- refutation, or is held out for evaluation). Nothing is ever deleted.
CREATE TABLE pinned_candidates (
    id             INTEGER PRIMARY KEY,
    submission_id  INTEGER NOT NULL REFERENCES ask_submissions(id),
    workflow       TEXT NOT NULL,
    head           INTEGER NOT NULL REFERENCES entities(id),
    relation       INTEGER NOT NULL REFERENCES relations(id),
    tail           INTEGER NOT NULL REFERENCES entities(id),
    probability    REAL NOT NULL,                    -- as the ask computed it
    spread         REAL NOT NULL,
    origin         TEXT NOT NULL CHECK (origin IN ('prediction', 'claim')),
    status         TEXT NOT NULL DEFAULT 'waiting' CHECK (status IN ('waiting', 'claimed', 'skipped')),
    round_id       INTEGER REFERENCES rounds(id),   -- the round that took or skipped it
    hypothesis_id  INTEGER REFERENCES hypotheses(id),
    reason         TEXT,                             -- why it was skipped
    taken_at       TEXT,
    CHECK ((status = 'waiting') = (round_id IS NULL)),
    CHECK ((status = 'claimed') = (hypothesis_id IS NOT NULL)),
    CHECK (status <> 'skipped' OR reason IS NOT NULL)
) STRICT;

CREATE INDEX pinned_waiting ON pinned_candidates(workflow, id) WHERE status = 'waiting';
-- A triple waits at most once per workflow.
CREATE UNIQUE INDEX pinned_waiting_triple ON pinned_candidates(workflow, head, relation, tail)
    WHERE status = 'waiting';
CREATE UNIQUE INDEX pinned_hypothesis ON pinned_candidates(hypothesis_id)
    WHERE hypothesis_id IS NOT NULL;
CREATE INDEX pinned_round ON pinned_candidates(round_id) WHERE round_id IS NOT NULL;
