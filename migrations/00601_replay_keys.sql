-- +goose Up

-- A captured, signed webhook body re-sent under a new X-GitHub-Delivery id
-- must not act twice (SPEC §4). A command is one per comment: the first
-- delivery of a comment holds it. Commands stored before this migration may
-- repeat a comment; only the first of each counts.
ALTER TABLE github_commands ADD COLUMN first_of_comment boolean NOT NULL DEFAULT true;
UPDATE github_commands c SET first_of_comment = false
    WHERE EXISTS (SELECT 1 FROM github_commands o WHERE o.comment_id = c.comment_id AND o.id < c.id);
CREATE UNIQUE INDEX github_commands_comment ON github_commands (comment_id) WHERE first_of_comment;

-- A push is one per (repository, ref, before, after, pushed_at): the first
-- delivery of that push holds it, a replay finds it held. pushed_at (the
-- payload's repository.pushed_at, 0 when absent) tells a real push that
-- repeats an earlier transition (a branch reset and pushed again) from a
-- replay, whose signed body cannot change it.
CREATE TABLE push_claims (
    repository  text NOT NULL CHECK (repository = lower(repository)),
    ref         text NOT NULL,
    before_sha  text NOT NULL,
    after_sha   text NOT NULL,
    pushed_at   bigint NOT NULL,
    delivery_id bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    PRIMARY KEY (repository, ref, before_sha, after_sha, pushed_at)
);

-- +goose Down
DROP TABLE push_claims;
DROP INDEX github_commands_comment;
ALTER TABLE github_commands DROP COLUMN first_of_comment;
