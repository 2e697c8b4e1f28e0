-- +goose Up

-- A job left running by a Keystone process that died, and the job that took
-- its place (issue 12 item 10). The orphan is cancelled through River's API
-- and River's own rescuer finalizes it later; until then this row says it is
-- no longer live, so that nothing waits for it and no second replacement is
-- made. replacement_id is NULL when the orphan had no attempts left.
CREATE TABLE job_rescues (
    job_id         bigint PRIMARY KEY,
    replacement_id bigint,
    owner          text NOT NULL,
    rescued_at     timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE job_rescues;
