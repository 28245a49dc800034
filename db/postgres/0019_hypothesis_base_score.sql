-- The pair of db/migrations/0019: the probability a hypothesis had before the verdict
-- recalibration, beside `score`. NULL where no ensemble computed one.
ALTER TABLE hypotheses ADD COLUMN base_score DOUBLE PRECISION;
