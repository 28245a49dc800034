-- Checkpoints in the database: every file of a model's checkpoint directory, so that a model
-- trained on one host loads on any host that reaches the database (a PostgreSQL server has no
-- directory beside it). The directory under the data directory stays as written, and is used
-- as long as its files match; otherwise the files are materialised from here into
-- `<data-dir>/cache/models/<id>`.

-- 'directory': a row written before this migration, whose files exist only on disk at `path`;
-- 'database': every file of the checkpoint directory is in checkpoint_files.
ALTER TABLE models ADD COLUMN storage TEXT NOT NULL DEFAULT 'directory'
    CHECK (storage IN ('directory', 'database'));

CREATE TABLE checkpoint_files (
    model_id    INTEGER NOT NULL REFERENCES models(id),
    name        TEXT NOT NULL CHECK (length(name) > 0),  -- relative to the checkpoint dir, '/'-separated
    bytes       BLOB NOT NULL,
    checksum    TEXT NOT NULL,                           -- hex blake3 of bytes
    PRIMARY KEY (model_id, name)
) STRICT;
