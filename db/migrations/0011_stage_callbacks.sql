-- Whether a stage takes verdicts posted to `POST /api/v1/results` (an http stage with a
-- `callback_url`). Callbacks for any other stage (a human stage's quorum, an oracle) are
-- refused. Rounds stored before this column existed keep taking callbacks at their http
-- stages only, which is what their services may still be doing.
ALTER TABLE round_stages ADD COLUMN callbacks INTEGER NOT NULL DEFAULT 0 CHECK (callbacks IN (0, 1));
UPDATE round_stages SET callbacks = 1 WHERE kind = 'http';
