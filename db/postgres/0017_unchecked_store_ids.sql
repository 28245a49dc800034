-- Round batches without per-row foreign-key checks on the ids the store resolves itself.
-- PostgreSQL checks each foreign key of each inserted row through a trigger (one query a row
-- and key): storing 10,000 ranked hypotheses took 222 ms with their six keys, about 180 ms of
-- it these checks, and recording 5,000 refutations 90 ms, the largest steps of a round on this
-- engine. The ids dropped here are entities, relations, versions and models, which the store
-- looks up or assigns in the same write transaction and never deletes, as for `edges`, which
-- never had foreign keys (`graph verify` checks those). A hypothesis keeps its round's key (one
-- round a batch) and `fresh_model`. SQLite checks foreign keys inside the insert at no
-- measurable cost (38 ms for the same batch), so its 0017 changes nothing.
ALTER TABLE hypotheses
    DROP CONSTRAINT hypotheses_head_fkey,
    DROP CONSTRAINT hypotheses_relation_fkey,
    DROP CONSTRAINT hypotheses_tail_fkey,
    DROP CONSTRAINT hypotheses_model_id_fkey,
    DROP CONSTRAINT hypotheses_graph_version_fkey;

ALTER TABLE refutations
    DROP CONSTRAINT refutations_head_fkey,
    DROP CONSTRAINT refutations_relation_fkey,
    DROP CONSTRAINT refutations_tail_fkey,
    DROP CONSTRAINT refutations_version_fkey,
    DROP CONSTRAINT refutations_removed_in_fkey;

-- Entity search folds case beyond ASCII, as SQLite's FTS5 trigram table does: under
-- `COLLATE "C"` lower() maps A-Z only, so "ΔFosB" or "Ärztekammer" were found by no query in
-- another case. Where the server has ICU (Debian's, the official images', most packages),
-- the trigram indexes are made on lower() under ICU's root collation, which the store then
-- uses in its queries (it reads which from the index definition). Without ICU they stay as
-- they were: ASCII folding only.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu') THEN
        DROP INDEX entities_key_trgm;
        DROP INDEX entities_name_trgm;
        CREATE INDEX entities_key_trgm ON entities
            USING gin (lower(key COLLATE "und-x-icu") gin_trgm_ops);
        CREATE INDEX entities_name_trgm ON entities
            USING gin (lower(name COLLATE "und-x-icu") gin_trgm_ops);
    END IF;
END
$$;
