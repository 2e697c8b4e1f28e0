-- +goose Up

-- Pull-request previews (SPEC §14). A preview is an app row of its own,
-- named <app>-pr-<N>, so that the deploy pipeline, the per-app lock, the
-- host port and container ownership apply to it unchanged. It belongs to
-- its parent app (the production app it previews) by id, never by name.
ALTER TABLE apps
    ADD COLUMN pr_number     integer CHECK (pr_number > 0),
    ADD COLUMN parent_app_id bigint REFERENCES apps (id),
    -- The pull request's head branch (same-repository previews), for the
    -- periodic pass that removes previews of deleted branches.
    ADD COLUMN head_ref      text NOT NULL DEFAULT '';
ALTER TABLE apps ADD CONSTRAINT apps_preview_parent CHECK ((pr_number IS NULL) = (parent_app_id IS NULL));
ALTER TABLE apps DROP CONSTRAINT apps_name_check;
ALTER TABLE apps ADD CONSTRAINT apps_name_check CHECK (
    name ~ '^[a-z0-9-]{1,40}$' AND pr_number IS NULL
    OR pr_number IS NOT NULL AND name = substring(name from '^[a-z0-9-]{1,40}-pr-') || pr_number::text);
CREATE UNIQUE INDEX apps_preview ON apps (parent_app_id, pr_number) WHERE pr_number IS NOT NULL;

-- Preview secrets: set apart from production's, and never given to it.
ALTER TABLE secrets ADD COLUMN preview boolean NOT NULL DEFAULT false;
ALTER TABLE secrets DROP CONSTRAINT secrets_owner_repo_app_name_key;
ALTER TABLE secrets ADD CONSTRAINT secrets_owner_repo_app_name_preview_key UNIQUE (owner, repo, app, name, preview);

-- +goose Down
DELETE FROM secrets WHERE preview;
ALTER TABLE secrets DROP CONSTRAINT secrets_owner_repo_app_name_preview_key;
ALTER TABLE secrets ADD CONSTRAINT secrets_owner_repo_app_name_key UNIQUE (owner, repo, app, name);
ALTER TABLE secrets DROP COLUMN preview;
DROP INDEX apps_preview;
ALTER TABLE apps DROP CONSTRAINT apps_name_check;
DELETE FROM apps WHERE pr_number IS NOT NULL AND NOT EXISTS (SELECT 1 FROM deployments d WHERE d.app_id = apps.id);
ALTER TABLE apps ADD CONSTRAINT apps_name_check CHECK (name ~ '^[a-z0-9-]{1,40}$') NOT VALID;
ALTER TABLE apps DROP CONSTRAINT apps_preview_parent;
ALTER TABLE apps DROP COLUMN head_ref, DROP COLUMN parent_app_id, DROP COLUMN pr_number;
