-- +goose Up

-- Passes over the App's recent webhook deliveries looking for ones Keystone
-- missed. The start of the last complete pass is where the next one stops
-- reading (with a margin); GitHub keeps deliveries for three days.
CREATE TABLE webhook_redelivery_runs (
    id          bigserial PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    listed      integer NOT NULL,
    missing     integer NOT NULL,
    redelivered integer NOT NULL,
    complete    boolean NOT NULL                   -- read back to the window and asked for all it found
);
CREATE INDEX webhook_redelivery_runs_complete ON webhook_redelivery_runs (started_at) WHERE complete;

-- Redeliveries Keystone asked GitHub for, so that a delivery that keeps
-- failing is asked for a bounded number of times.
CREATE TABLE webhook_redelivery_requests (
    guid              text PRIMARY KEY,
    github_id         bigint NOT NULL,             -- the delivery asked to be sent again
    requests          integer NOT NULL DEFAULT 1,
    last_requested_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE webhook_redelivery_requests;
DROP TABLE webhook_redelivery_runs;
