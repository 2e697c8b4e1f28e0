-- +goose Up

-- People who may use the status page. Local users have a password hash
-- (argon2id, PHC string); a user with a github_login may also, or only, sign
-- in with GitHub when it is configured.
CREATE TABLE users (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,39}$'),
    role          text NOT NULL CHECK (role IN ('viewer', 'deployer', 'admin')),
    password_hash text CHECK (password_hash IS NULL OR password_hash LIKE '$argon2id$%'),
    github_login  text CHECK (github_login ~ '^[A-Za-z0-9][A-Za-z0-9-]{0,38}$'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (password_hash IS NOT NULL OR github_login IS NOT NULL)
);
-- GitHub logins are case-insensitive.
CREATE UNIQUE INDEX users_github_login ON users (lower(github_login));

-- Signed-in sessions. The cookie holds a random token; only its SHA-256 is
-- stored, so a copy of the table signs nobody in. Removing a user ends their
-- sessions.
CREATE TABLE sessions (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_secret bytea NOT NULL CHECK (length(csrf_secret) = 32),
    method      text NOT NULL CHECK (method IN ('password', 'github')),
    remote_addr text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Failed sign-ins in the last minutes, per user name and per client address,
-- shared by every Keystone process. Old rows are pruned.
CREATE TABLE login_failures (
    key text NOT NULL,                 -- 'name:<name>' or 'addr:<ip>'
    at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_key_at ON login_failures (key, at);

-- The status page's rollback targets: an app's successful deployments, newest first.
CREATE INDEX deployments_app_succeeded ON deployments (app_id, id DESC) WHERE state = 'succeeded';

-- +goose Down
DROP INDEX deployments_app_succeeded;
DROP TABLE login_failures;
DROP TABLE sessions;
DROP TABLE users;
