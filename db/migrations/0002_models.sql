-- Trained models: each checkpoint is tied to the graph version and config it was trained on;
-- the weights live on disk under the data directory, their checksum here.
CREATE TABLE models (
    id             INTEGER PRIMARY KEY,
    graph_version  INTEGER NOT NULL REFERENCES graph_versions(id),
    parent_id      INTEGER REFERENCES models(id),   -- the checkpoint it was warm-started from
    kind           TEXT NOT NULL,
    config         TEXT NOT NULL,                   -- JSON TrainConfig
    path           TEXT NOT NULL,                   -- checkpoint directory
    checksum       TEXT NOT NULL,                   -- blake3 of the weights file
    metrics        TEXT NOT NULL DEFAULT '{}',      -- JSON: validation and training summary
    created_at     TEXT NOT NULL
) STRICT;
