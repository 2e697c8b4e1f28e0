-- +goose Up

-- GitHub's numeric user id of a user who signs in with GitHub, recorded at
-- their first GitHub sign-in (by github_login) and matched from then on: a
-- login can be renamed and registered again by someone else, the id cannot.
ALTER TABLE users ADD COLUMN github_id bigint UNIQUE;

-- +goose Down
ALTER TABLE users DROP COLUMN github_id;
