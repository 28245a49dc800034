-- The pair of db/postgres/0017, which drops the foreign keys of the entity, relation, version
-- and model ids of hypotheses and refutations there (each a per-row trigger on PostgreSQL).
-- SQLite checks them inside the insert at no measurable cost, so they stay here, and this
-- migration only keeps both engines at one schema version.
SELECT 1;
