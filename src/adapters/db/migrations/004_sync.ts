/**
 * 004: AWS IoT sync. Targets (an account and region to register with), each
 * CA's registration per target (written only after AWS answered), and the
 * offline bundles exported for stations that never go online, with the
 * receipts imported back. Upload rows gain the state 'revoked' (the
 * certificate was revoked at the target too); SQLite changes a CHECK only by
 * rebuilding the table.
 */
export const migration = {
  version: 4,
  name: "sync targets, CA registrations, offline bundles",
  sql: `
CREATE TABLE targets (
  name        TEXT PRIMARY KEY,
  config      TEXT NOT NULL,
  created_at  TEXT NOT NULL
);

CREATE TABLE ca_registrations (
  ca_label            TEXT NOT NULL REFERENCES cas(label),
  target              TEXT NOT NULL,
  aws_certificate_id  TEXT NOT NULL,
  aws_arn             TEXT NOT NULL,
  mode                TEXT NOT NULL CHECK (mode IN ('DEFAULT', 'SNI_ONLY')),
  remote_status       TEXT NOT NULL CHECK (remote_status IN ('ACTIVE', 'INACTIVE')),
  updated_at          TEXT NOT NULL,
  PRIMARY KEY (ca_label, target)
);

CREATE TABLE uploads_new (
  issuance_id     INTEGER NOT NULL REFERENCES issuances(id),
  target          TEXT NOT NULL,
  state           TEXT NOT NULL CHECK (state IN ('done', 'failed', 'left-to-jitr', 'revoked')),
  aws_certificate_id TEXT,
  aws_arn         TEXT,
  attempts        INTEGER NOT NULL DEFAULT 0,
  last_error      TEXT,
  updated_at      TEXT NOT NULL,
  PRIMARY KEY (issuance_id, target)
);
INSERT INTO uploads_new SELECT * FROM uploads;
DROP TABLE uploads;
ALTER TABLE uploads_new RENAME TO uploads;

CREATE TABLE bundles (
  id                   TEXT PRIMARY KEY,
  target               TEXT NOT NULL,
  manifest_sha256      TEXT NOT NULL,
  items                TEXT NOT NULL,
  created_at           TEXT NOT NULL,
  receipt_sha256       TEXT,
  receipt_imported_at  TEXT
);
`,
};
