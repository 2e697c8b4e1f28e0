-- +goose Up

-- Everything Keystone says to GitHub (commit statuses, comments and their
-- edits, reactions), written in the transaction of the change that causes it
-- and delivered by the outbox dispatcher. Entries of one ordering key
-- (a repository's SHA and status context, or a comment thread) are sent one
-- after the other in id order; a pending entry blocks only its own key.
CREATE TABLE github_outbox (
    id              bigserial PRIMARY KEY,
    installation_id bigint NOT NULL,
    owner           text NOT NULL,
    repo            text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('status', 'comment', 'reaction')),
    ordering_key    text NOT NULL,
    payload         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sent', 'failed', 'squashed', 'skipped')),
    attempts        integer NOT NULL DEFAULT 0,          -- sends started, counted before each send
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text NOT NULL DEFAULT '',
    -- The end of the snapshot taken after the entry drew its id: every
    -- transaction that drew a smaller id and had not committed yet has an
    -- xid below it. The entry is sent only once all of those have ended, so
    -- a key's entries go out in id order even when transactions commit out
    -- of it (see store.InsertOutboxEntry).
    snap_xmax       xid8 NOT NULL DEFAULT pg_snapshot_xmax(pg_current_snapshot()),
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX github_outbox_pending_key ON github_outbox (ordering_key, id) WHERE state = 'pending';
CREATE INDEX github_outbox_pending_due ON github_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX github_outbox_key ON github_outbox (ordering_key, id);
CREATE INDEX github_outbox_finished ON github_outbox (finished_at) WHERE state <> 'pending';

-- An installation GitHub asked to wait (rate limits cover every call of its
-- token): nothing of it is sent before until.
CREATE TABLE github_outbox_pauses (
    installation_id bigint PRIMARY KEY,
    until           timestamptz NOT NULL,
    reason          text NOT NULL DEFAULT ''
);

-- A Keystone comment that is posted once and then edited: the reply to a
-- command, the deploy comment of an app on a pull request. Its body carries
-- the hidden marker <!-- keystone:thread=KEY -->, by which a post whose
-- outcome was unknown is found again instead of being repeated.
CREATE TABLE github_comment_threads (
    id              bigserial PRIMARY KEY,
    installation_id bigint NOT NULL,
    owner           text NOT NULL,
    repo            text NOT NULL,
    issue_number    integer NOT NULL CHECK (issue_number > 0),
    key             text NOT NULL,
    comment_id      bigint,                              -- GitHub's, once posted
    create_attempts integer NOT NULL DEFAULT 0,          -- posts started, counted before each
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX github_comment_threads_key
    ON github_comment_threads (lower(owner), lower(repo), issue_number, key);

-- The pull request a pushed commit came from (0: none), looked up once.
CREATE TABLE github_commit_pulls (
    owner        text NOT NULL,
    repo         text NOT NULL,
    sha          text NOT NULL,
    pull_number  integer NOT NULL,
    looked_up_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, repo, sha)
);

-- +goose Down
DROP TABLE github_commit_pulls;
DROP TABLE github_comment_threads;
DROP TABLE github_outbox_pauses;
DROP TABLE github_outbox;
