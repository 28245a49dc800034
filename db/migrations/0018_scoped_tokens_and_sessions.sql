-- Accounts that can be cut off, services that answer only what they serve, sign-in sessions
-- held by the server, and callback keys nobody can guess.

-- `hypograph user disable` (reversible) and `user revoke` (the token stops working; a revoked
-- token's hash is replaced by a value no token hashes to, so `token_hash` stays NOT NULL UNIQUE).
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1));
ALTER TABLE users ADD COLUMN revoked_at TEXT;

-- What a service token may answer by callback: a workflow, and one of its stages by name or
-- '' for every stage that takes callbacks. A service with no row answers nothing.
CREATE TABLE user_scopes (
    user_id   INTEGER NOT NULL REFERENCES users(id),
    workflow  TEXT NOT NULL CHECK (length(workflow) > 0),
    stage     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, workflow, stage)
) STRICT;

-- Web sign-ins: the cookie carries a random session id (stored hashed), not the token. The
-- token's hash at sign-in is kept, so rotating or revoking the token ends its sessions even
-- if a delete were missed; logging out deletes the row.
CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    token_hash  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
) STRICT;

CREATE INDEX sessions_user ON sessions(user_id);

-- Keys the server makes on its first start (the CSRF key), shared by every server process on
-- the database so a form rendered by one is accepted by another.
CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,
    secret      TEXT NOT NULL,
    created_at  TEXT NOT NULL
) STRICT;

-- Account changes, for the audit page: who did what to which user.
CREATE TABLE user_events (
    id         INTEGER PRIMARY KEY,
    user_name  TEXT NOT NULL,
    event      TEXT NOT NULL CHECK (event IN (
                   'added', 'scoped', 'revoked', 'rotated', 'disabled', 'enabled')),
    detail     TEXT,
    actor      TEXT NOT NULL,
    at         TEXT NOT NULL
) STRICT;

-- The key a service answers an item by (`POST /api/v1/results`): random, made when the item is
-- first sent to a stage that takes callbacks, and the same on every resend. Items already sent
-- keep the key they went out with (`round:hypothesis:stage`), so their answers still count.
ALTER TABLE stage_items ADD COLUMN callback_key TEXT;

UPDATE stage_items SET callback_key =
    (SELECT h.round_id FROM hypotheses h WHERE h.id = stage_items.hypothesis_id)
    || ':' || hypothesis_id || ':' || stage
WHERE status = 'submitted' AND EXISTS (
    SELECT 1 FROM hypotheses h JOIN round_stages st ON st.round_id = h.round_id
    WHERE h.id = stage_items.hypothesis_id AND st.stage = stage_items.stage AND st.callbacks = 1);

CREATE UNIQUE INDEX stage_items_callback_key ON stage_items(callback_key)
    WHERE callback_key IS NOT NULL;
