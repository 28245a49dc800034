-- Entity features (a compound's SMILES, a protein's sequence, an embedding computed elsewhere)
-- are graph data, versioned like edges: a row is added in one version and removed in a later
-- one (a changed value is the old row removed and a new one added in the same version). Each
-- version's hash covers the features it set and removed (hash format 4); versions written
-- before keep their format. The features at version v are the rows with added_in <= v and
-- (removed_in NULL or > v).
CREATE TABLE entity_features (
    id          INTEGER PRIMARY KEY,
    entity      INTEGER NOT NULL REFERENCES entities(id),
    kind        TEXT NOT NULL CHECK (kind IN ('smiles', 'sequence', 'vector')),
    text        TEXT,                -- smiles, sequence
    vector      BLOB,                -- vector: f32 little-endian, `dim` values
    dim         INTEGER,
    added_in    INTEGER NOT NULL REFERENCES graph_versions(id),
    removed_in  INTEGER REFERENCES graph_versions(id),  -- NULL while live
    CHECK (CASE kind
        WHEN 'vector' THEN text IS NULL AND vector IS NOT NULL AND dim IS NOT NULL
            AND dim > 0 AND length(vector) = 4 * dim
        ELSE vector IS NULL AND dim IS NULL AND text IS NOT NULL AND length(text) > 0
    END)
) STRICT;

-- One live value per entity and kind; also the lookup of the values an import may replace.
CREATE UNIQUE INDEX entity_features_live ON entity_features(entity, kind) WHERE removed_in IS NULL;
-- Replaced values, for blame.
CREATE INDEX entity_features_gone ON entity_features(entity, kind) WHERE removed_in IS NOT NULL;
-- A version's delta (diff, verify) and older checkouts.
CREATE INDEX entity_features_added ON entity_features(added_in);
CREATE INDEX entity_features_removed ON entity_features(removed_in) WHERE removed_in IS NOT NULL;

-- Features set (new or changed values) and removed by each version.
ALTER TABLE graph_versions ADD COLUMN n_features INTEGER NOT NULL DEFAULT 0;
ALTER TABLE graph_versions ADD COLUMN n_features_removed INTEGER NOT NULL DEFAULT 0;
