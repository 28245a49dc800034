-- Rounds of a workflow and the hypotheses they test. Every transition of the round state
-- machine and of each hypothesis's per-stage status is a row update here, so a killed process
-- resumes from the database alone.

CREATE TABLE rounds (
    id              INTEGER PRIMARY KEY,
    workflow        TEXT NOT NULL,
    number          INTEGER NOT NULL,                -- 1, 2, ... within the workflow
    state           TEXT NOT NULL CHECK (state IN (
                        'planned', 'training', 'generating', 'ranking', 'dispatching',
                        'awaiting', 'ingesting', 'retraining', 'done', 'failed')),
    stage           INTEGER NOT NULL DEFAULT 0,      -- the stage dispatching or awaiting
    spec            TEXT NOT NULL,                   -- the workflow YAML as written (no secrets)
    seed            INTEGER NOT NULL,
    base_version    INTEGER REFERENCES graph_versions(id),  -- the graph hypotheses came from
    model_id        INTEGER REFERENCES models(id),          -- the model that scored them
    result_version  INTEGER REFERENCES graph_versions(id),  -- the version ingest wrote
    retrained_model INTEGER REFERENCES models(id),          -- the warm retrain after ingest
    metrics         TEXT NOT NULL DEFAULT '{}',      -- JSON: counts, MRR, calibration, timings
    error           TEXT,
    fire_time       TEXT,                            -- the schedule slot that started it
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (workflow, number)
) STRICT;

CREATE INDEX rounds_open ON rounds(workflow) WHERE state NOT IN ('done', 'failed');

-- A generated, ranked candidate edge. `status` is its place in the round:
-- `active` while a stage holds it; then `confirmed`, `refuted`, `inconclusive`, `stopped`
-- (a stage's verdict did not advance it), `failed` (a plugin gave up, with the reason) or
-- `expired` (no answer before the stage's timeout). Nothing is ever deleted.
CREATE TABLE hypotheses (
    id             INTEGER PRIMARY KEY,
    round_id       INTEGER NOT NULL REFERENCES rounds(id),
    head           INTEGER NOT NULL REFERENCES entities(id),
    relation       INTEGER NOT NULL REFERENCES relations(id),
    tail           INTEGER NOT NULL REFERENCES entities(id),
    score          REAL NOT NULL,                    -- ensemble mean probability
    spread         REAL NOT NULL,                    -- ensemble standard deviation
    acquisition    REAL NOT NULL,                    -- the acquisition value it was picked by
    rank           INTEGER NOT NULL,                 -- 0 = picked first
    model_id       INTEGER REFERENCES models(id),
    graph_version  INTEGER NOT NULL REFERENCES graph_versions(id),
    stage          INTEGER NOT NULL DEFAULT 0,       -- the stage that holds it or last held it
    status         TEXT NOT NULL DEFAULT 'active' CHECK (status IN (
                       'active', 'confirmed', 'refuted', 'inconclusive', 'stopped',
                       'failed', 'expired')),
    reason         TEXT,                             -- why it failed, expired or stopped
    UNIQUE (round_id, head, relation, tail),
    UNIQUE (round_id, rank)
) STRICT;

CREATE INDEX hypotheses_open ON hypotheses(round_id, stage) WHERE status = 'active';

-- Each hypothesis's progress through each stage it reached. `submitted` rows carry the
-- idempotency key the plugin saw; a resumed dispatch resends exactly the `queued` ones.
CREATE TABLE stage_items (
    hypothesis_id  INTEGER NOT NULL REFERENCES hypotheses(id),
    stage          INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN (
                       'queued', 'submitted', 'answered', 'failed', 'expired')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    external_id    TEXT,                             -- a plugin's job id, for polling
    reason         TEXT,
    submitted_at   TEXT,
    deadline       TEXT,                             -- RFC 3339; expired after it
    answered_at    TEXT,
    PRIMARY KEY (hypothesis_id, stage)
) STRICT;

CREATE INDEX stage_items_waiting ON stage_items(stage, status) WHERE status IN ('queued', 'submitted');

-- Answers. One per (hypothesis, stage, reviewer): a repeated callback changes nothing.
-- `reviewer` is '' for machine stages.
CREATE TABLE verdicts (
    id             INTEGER PRIMARY KEY,
    hypothesis_id  INTEGER NOT NULL REFERENCES hypotheses(id),
    stage          INTEGER NOT NULL,
    verdict        TEXT NOT NULL CHECK (verdict IN ('confirmed', 'refuted', 'inconclusive')),
    confidence     REAL NOT NULL,
    evidence       TEXT NOT NULL DEFAULT '{}',       -- JSON
    cost           REAL NOT NULL DEFAULT 0,
    reviewer       TEXT NOT NULL DEFAULT '',
    created_at     TEXT NOT NULL,
    UNIQUE (hypothesis_id, stage, reviewer)
) STRICT;
