-- When the model retrains while hypotheses wait for review, their fresh score is kept beside
-- the score they were ranked with, so reviewers see what changed; a stage may mark items whose
-- fresh score fell below its threshold as stale.
ALTER TABLE hypotheses ADD COLUMN fresh_score REAL;
ALTER TABLE hypotheses ADD COLUMN fresh_model INTEGER REFERENCES models(id);
ALTER TABLE round_stages ADD COLUMN stale_below REAL;
