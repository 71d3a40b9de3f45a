/**
 * 009: offline uploaders and their receipts. An online uploader has its own
 * key; an officer enrolls its certificate here, and only receipts signed by
 * an enrolled uploader are imported. A bundle may come back with several
 * receipts (a re-upload after a partial failure): each is kept by its own id,
 * so a replay is refused and a later receipt completes the earlier one.
 */
export const migration = {
  version: 9,
  name: "offline uploaders and bundle receipts",
  sql: `
CREATE TABLE uploaders (
  name         TEXT PRIMARY KEY,
  fingerprint  TEXT NOT NULL UNIQUE,
  cert_der     BLOB NOT NULL,
  enrolled_by  TEXT NOT NULL,
  enrolled_at  TEXT NOT NULL
);

CREATE TABLE bundle_receipts (
  id           TEXT PRIMARY KEY,
  bundle_id    TEXT NOT NULL REFERENCES bundles(id),
  sha256       TEXT NOT NULL,
  uploader     TEXT NOT NULL REFERENCES uploaders(name),
  imported_at  TEXT NOT NULL
);
`,
};
