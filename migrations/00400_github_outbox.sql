-- +goose Up

-- Everything Keystone says to GitHub (commit statuses, comments and their
-- edits, reactions), written in the transaction of the change that causes it
-- and delivered by the outbox dispatcher. Entries of one ordering key
-- (a repository's SHA and status context, or a comment thread) are sent one
-- after the other in the order their transactions committed (seq); a
-- pending entry blocks only its own key.
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
    -- The entry's place in its key: drawn when its transaction commits
    -- (github_outbox_sequence), so a key's entries go out in the order their
    -- transactions committed, whatever order they were inserted in.
    seq             bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX github_outbox_pending_key ON github_outbox (ordering_key, seq) WHERE state = 'pending';
CREATE INDEX github_outbox_pending_due ON github_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX github_outbox_key ON github_outbox (ordering_key, seq);
CREATE INDEX github_outbox_unnumbered ON github_outbox (id) WHERE seq IS NULL;
CREATE SEQUENCE github_outbox_seq;

-- At commit, after everything else its transaction did, number the
-- transaction's new entries. The keys are taken first, in a fixed order and
-- until the commit ends, so that another transaction numbering entries of
-- the same key waits for this one to be committed: numbers follow commit
-- order. Taken last and in order, these locks cannot deadlock with the row
-- locks of the transactions that write entries. Entries without a number
-- that a transaction sees are its own: others' get theirs before they
-- commit.
-- +goose StatementBegin
CREATE FUNCTION github_outbox_sequence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    entry bigint;
BEGIN
    IF (SELECT seq FROM github_outbox WHERE id = NEW.id) IS NOT NULL THEN
        RETURN NULL; -- numbered with the transaction's first entry
    END IF;
    PERFORM pg_advisory_xact_lock(19269, hashtext(k))
    FROM (SELECT DISTINCT ordering_key AS k FROM github_outbox WHERE seq IS NULL ORDER BY 1) AS keys;
    FOR entry IN SELECT id FROM github_outbox WHERE seq IS NULL ORDER BY id LOOP
        UPDATE github_outbox SET seq = nextval('github_outbox_seq') WHERE id = entry;
    END LOOP;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE CONSTRAINT TRIGGER github_outbox_sequence AFTER INSERT ON github_outbox
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION github_outbox_sequence();
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
DROP FUNCTION github_outbox_sequence();
DROP SEQUENCE github_outbox_seq;
