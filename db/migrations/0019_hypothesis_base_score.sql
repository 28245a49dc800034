-- The probability a hypothesis had before the verdict recalibration (model::recalibrate),
-- beside `score` (what reviewers saw): the next recalibration is fitted on it, so fits do
-- not compound. NULL where no ensemble computed one (pinned asks, rows written before it).
ALTER TABLE hypotheses ADD COLUMN base_score REAL;
