-- An immutable id per user account, never reused: API tokens and persistent MQTT sessions are
-- bound to it, so deleting a user and creating one with the same name does not bring back the
-- old account's tokens or sessions. Existing rows get their id at the next start (`Admin::start`),
-- since SQLite and PostgreSQL share no expression for a random value.
ALTER TABLE users ADD COLUMN uid TEXT NOT NULL DEFAULT '';
