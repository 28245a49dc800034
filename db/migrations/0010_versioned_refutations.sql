-- no-transaction
-- Refutations are training data, so they become versioned like edges: a refutation is added
-- in one version and may be removed in a later one (a retracted `refuted` verdict), and each
-- version's hash covers the refutations it added and removed (hash format 3). Versions
-- written before keep format 2, which their stored hashes were computed with.
--
-- Rounds: at most one open round per workflow, enforced by the schema, and a count of the
-- attempts that drove a round and ended in an error (after `max_attempts` it is failed).
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE refutations_new (
    id          INTEGER PRIMARY KEY,
    head        INTEGER NOT NULL REFERENCES entities(id),
    relation    INTEGER NOT NULL REFERENCES relations(id),
    tail        INTEGER NOT NULL REFERENCES entities(id),
    version     INTEGER NOT NULL REFERENCES graph_versions(id),  -- the version that added it
    removed_in  INTEGER REFERENCES graph_versions(id),          -- the version that withdrew it
    evidence    TEXT NOT NULL DEFAULT '{}'                       -- JSON
) STRICT;
INSERT INTO refutations_new (head, relation, tail, version, evidence)
    SELECT head, relation, tail, version, evidence FROM refutations ORDER BY rowid;
DROP TABLE refutations;
ALTER TABLE refutations_new RENAME TO refutations;
CREATE UNIQUE INDEX refutations_live ON refutations(head, relation, tail) WHERE removed_in IS NULL;
CREATE INDEX refutations_version ON refutations(version);
CREATE INDEX refutations_removed ON refutations(removed_in) WHERE removed_in IS NOT NULL;

ALTER TABLE graph_versions ADD COLUMN hash_format INTEGER NOT NULL DEFAULT 2;
ALTER TABLE graph_versions ADD COLUMN n_refuted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE graph_versions ADD COLUMN n_unrefuted INTEGER NOT NULL DEFAULT 0;

-- Before this, two processes could open two rounds of one workflow: keep the newest open.
UPDATE rounds SET state = 'failed',
    error = 'failed by the schema upgrade: another round of this workflow was open at the same time'
    WHERE state NOT IN ('done', 'failed')
      AND id NOT IN (SELECT max(id) FROM rounds WHERE state NOT IN ('done', 'failed') GROUP BY workflow);
DROP INDEX rounds_open;
CREATE UNIQUE INDEX rounds_open ON rounds(workflow) WHERE state NOT IN ('done', 'failed');
ALTER TABLE rounds ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;

-- How a closed stage turned decisions into statuses, so that a retraction can re-decide it
-- the same way: the outcomes that advance (JSON list), whether its decision is final, and
-- whether a refutation ends the hypothesis at once. NULL on stages closed before this.
ALTER TABLE round_stages ADD COLUMN advance TEXT;
ALTER TABLE round_stages ADD COLUMN is_final INTEGER;
ALTER TABLE round_stages ADD COLUMN refute_any INTEGER;
COMMIT;
PRAGMA foreign_keys = ON;
