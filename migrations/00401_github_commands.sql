-- +goose Up

-- Each /keystone command read from a comment, and how far it got: a retried
-- comment job resumes from here instead of repeating what was done (the
-- reaction, the reply, the deployment it asked for).
CREATE TABLE github_commands (
    id              bigserial PRIMARY KEY,
    delivery_id     bigint NOT NULL UNIQUE REFERENCES webhook_deliveries (id),
    installation_id bigint NOT NULL,
    owner           text NOT NULL,
    repo            text NOT NULL,
    issue_number    integer NOT NULL,
    comment_id      bigint NOT NULL,
    actor           text NOT NULL,
    verb            text NOT NULL,
    outcome         text NOT NULL
                    CHECK (outcome IN ('accepted', 'denied', 'usage', 'done', 'refused')),
    app_id          bigint REFERENCES apps (id),
    deployment_id   bigint REFERENCES deployments (id),   -- the deployment it asked for
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX github_commands_deployment ON github_commands (deployment_id) WHERE deployment_id IS NOT NULL;

-- +goose Down
DROP TABLE github_commands;
