-- The pair of db/migrations/0020: the model's own evidence paths for a hypothesis, as JSON
-- text. NULL where the model found none.
ALTER TABLE hypotheses ADD COLUMN model_paths TEXT;
