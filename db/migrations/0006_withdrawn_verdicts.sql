-- no-transaction
-- Verdicts can be withdrawn (a retraction, or a reviewer's undo) and given again: one
-- *standing* verdict per (hypothesis, stage, reviewer), enforced by a partial unique index.
-- SQLite cannot drop a table constraint, so the table is rebuilt (foreign keys off while the
-- new table takes the old one's name, so `retractions` keeps pointing at it).
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE verdicts_new (
    id             INTEGER PRIMARY KEY,
    hypothesis_id  INTEGER NOT NULL REFERENCES hypotheses(id),
    stage          INTEGER NOT NULL,
    verdict        TEXT NOT NULL CHECK (verdict IN ('confirmed', 'refuted', 'inconclusive')),
    confidence     REAL NOT NULL,
    evidence       TEXT NOT NULL DEFAULT '{}',
    cost           REAL NOT NULL DEFAULT 0,
    reviewer       TEXT NOT NULL DEFAULT '',
    created_at     TEXT NOT NULL,
    comment        TEXT,
    client         TEXT,
    role           TEXT,
    withdrawn      INTEGER NOT NULL DEFAULT 0      -- 1 once retracted or undone
) STRICT;
INSERT INTO verdicts_new (id, hypothesis_id, stage, verdict, confidence, evidence, cost,
                          reviewer, created_at, comment, client, role, withdrawn)
    SELECT id, hypothesis_id, stage, verdict, confidence, evidence, cost, reviewer, created_at,
           comment, client, role,
           CASE WHEN id IN (SELECT verdict_id FROM retractions) THEN 1 ELSE 0 END
    FROM verdicts;
DROP TABLE verdicts;
ALTER TABLE verdicts_new RENAME TO verdicts;
CREATE UNIQUE INDEX verdicts_standing ON verdicts(hypothesis_id, stage, reviewer) WHERE withdrawn = 0;
CREATE INDEX verdicts_hypothesis ON verdicts(hypothesis_id, stage);
-- An undo is a retraction by the reviewer themself; it may repeat for one verdict only once.
COMMIT;
PRAGMA foreign_keys = ON;
