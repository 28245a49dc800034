-- Who asserts each edge: an edge given by several sources (two KGX rows, two files) is one
-- edge with every source recorded. Source rows are versioned like edges: a (triple, source)
-- row is added in one version and removed in a later one (its edge removed, a `--replace`
-- import that no longer gives that source), and each version's hash covers the sources it
-- added and removed (hash format 5). The sources at version v are the rows with
-- added_in <= v and (removed_in NULL or > v); a live source's edge is live.

-- Source names (`infores:drugbank`), interned: millions of rows name a few dozen sources.
-- Never deleted, so ids are never reused.
CREATE TABLE sources (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE CHECK (length(key) > 0)
) STRICT;

-- Like `edges`, no FOREIGN KEY clauses: a KGX import writes one row per (edge, source), as
-- many as its edges, and the parent-key checks would cost what they cost there. The store is
-- the only writer and `graph verify` checks that every id resolves and every live source's
-- edge is live.
CREATE TABLE edge_sources (
    id          INTEGER PRIMARY KEY,
    head        INTEGER NOT NULL,            -- entities(id)
    relation    INTEGER NOT NULL,            -- relations(id)
    tail        INTEGER NOT NULL,            -- entities(id)
    source      INTEGER NOT NULL,            -- sources(id)
    added_in    INTEGER NOT NULL,            -- graph_versions(id)
    removed_in  INTEGER                      -- graph_versions(id); NULL while live
) STRICT;

-- At most one live row per (triple, source); also the lookup of a live triple's sources.
CREATE UNIQUE INDEX edge_sources_live ON edge_sources(head, relation, tail, source)
    WHERE removed_in IS NULL;
-- Removed rows, for history; a version's delta (diff, verify, revert).
CREATE INDEX edge_sources_gone ON edge_sources(head, relation, tail) WHERE removed_in IS NOT NULL;
CREATE INDEX edge_sources_added ON edge_sources(added_in);
CREATE INDEX edge_sources_removed ON edge_sources(removed_in) WHERE removed_in IS NOT NULL;

-- Sources added and removed by each version.
ALTER TABLE graph_versions ADD COLUMN n_sources INTEGER NOT NULL DEFAULT 0;
ALTER TABLE graph_versions ADD COLUMN n_sources_removed INTEGER NOT NULL DEFAULT 0;
