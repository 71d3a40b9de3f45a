/**
 * 007: people. One role each; passphrases stored only as scrypt hashes;
 * consecutive failures counted, and a lock that only an officer lifts.
 */
export const migration = {
  version: 7,
  name: "users and roles",
  sql: `
CREATE TABLE users (
  name        TEXT PRIMARY KEY,
  role        TEXT NOT NULL CHECK (role IN ('operator', 'officer', 'auditor', 'sync')),
  hash        TEXT NOT NULL,
  failures    INTEGER NOT NULL DEFAULT 0,
  locked_at   TEXT,
  disabled    INTEGER NOT NULL DEFAULT 0,
  created_by  TEXT NOT NULL,
  created_at  TEXT NOT NULL
);
`,
};
