-- db/migrations/0016_checkpoint_files.sql in PostgreSQL's dialect (see db/postgres/README.md):
-- checkpoint files in the database and the models row's storage.

ALTER TABLE models ADD COLUMN storage TEXT COLLATE "C" NOT NULL DEFAULT 'directory'
    CHECK (storage IN ('directory', 'database'));

CREATE TABLE checkpoint_files (
    model_id    BIGINT NOT NULL REFERENCES models(id),
    name        TEXT COLLATE "C" NOT NULL CHECK (length(name) > 0),
    bytes       BYTEA NOT NULL,
    checksum    TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (model_id, name)
);
