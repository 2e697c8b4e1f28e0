-- +goose Up

-- Admins' allowances for an app to be created, re-created or re-pointed by
-- pushes to a branch other than the repository's default one (SPEC §5).
-- Which apps exist is otherwise read from the default branch's .keystone.yml:
-- a push to another branch may only deploy apps that track it already.
-- Owner and repo are stored lower-case, as GitHub compares them.
CREATE TABLE app_allowances (
    owner      text NOT NULL CHECK (owner = lower(owner) AND owner <> ''),
    repo       text NOT NULL CHECK (repo = lower(repo) AND repo <> ''),
    app        text NOT NULL CHECK (app ~ '^[a-z0-9-]{1,40}$'),
    branch     text NOT NULL CHECK (branch <> ''),
    allowed_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, repo, app)
);

-- +goose Down
DROP TABLE app_allowances;
