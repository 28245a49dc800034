-- The paths that carried a hypothesis's score, found by the model itself (a message-passing
-- member's edge importances, model::gnn::explain), as JSON: `[{"steps": [{"from", "relation",
-- "to", "forward", "claim"}], "share"}]`, keys not names. Review cards and plugins show them.
-- NULL where the model has no such member or the hypothesis ranked below the explained ones.
ALTER TABLE hypotheses ADD COLUMN model_paths TEXT;
