/**
 * 003: issuances (write-ahead records of every certificate signed), rejections,
 * the per-target upload state that makes issuances a queue, and signed
 * checkpoints of the event log head.
 */
export const migration = {
  version: 3,
  name: "issuance records, upload queue, checkpoints",
  sql: `
CREATE TABLE issuances (
  id            INTEGER PRIMARY KEY,
  serial        TEXT NOT NULL UNIQUE,
  device_id     TEXT NOT NULL,
  spki_sha256   TEXT NOT NULL UNIQUE,
  key_type      TEXT NOT NULL,
  profile       TEXT NOT NULL,
  ca_label      TEXT NOT NULL REFERENCES cas(label),
  cert_der      BLOB NOT NULL,
  fingerprint   TEXT NOT NULL UNIQUE,
  not_before    TEXT NOT NULL,
  not_after     TEXT NOT NULL,
  validity_cut  INTEGER NOT NULL CHECK (validity_cut IN (0, 1)),
  state         TEXT NOT NULL CHECK (state IN ('ISSUED', 'DELIVERED', 'CONFIRMED', 'DELIVERY_FAILED', 'SUPERSEDED', 'REVOKED')),
  state_reason  TEXT,
  supersedes    INTEGER REFERENCES issuances(id),
  operator      TEXT NOT NULL,
  station       TEXT NOT NULL,
  origin        TEXT NOT NULL,
  work_order    TEXT,
  csr_sha256    TEXT NOT NULL,
  created_at    TEXT NOT NULL,
  updated_at    TEXT NOT NULL
);
-- At most one live certificate per device id.
CREATE UNIQUE INDEX issuances_one_live_per_device ON issuances(device_id)
  WHERE state IN ('ISSUED', 'DELIVERED', 'CONFIRMED');
CREATE INDEX issuances_created ON issuances(created_at);

CREATE TABLE rejections (
  id          INTEGER PRIMARY KEY,
  reason      TEXT NOT NULL,
  message     TEXT NOT NULL,
  device_id   TEXT,
  csr_sha256  TEXT NOT NULL,
  profile     TEXT,
  operator    TEXT NOT NULL,
  station     TEXT NOT NULL,
  origin      TEXT NOT NULL,
  work_order  TEXT,
  created_at  TEXT NOT NULL
);
CREATE INDEX rejections_created ON rejections(created_at);

-- An issuance is queued for a target until a row here says it is done there.
CREATE TABLE uploads (
  issuance_id     INTEGER NOT NULL REFERENCES issuances(id),
  target          TEXT NOT NULL,
  state           TEXT NOT NULL CHECK (state IN ('done', 'failed', 'left-to-jitr')),
  aws_certificate_id TEXT,
  aws_arn         TEXT,
  attempts        INTEGER NOT NULL DEFAULT 0,
  last_error      TEXT,
  updated_at      TEXT NOT NULL,
  PRIMARY KEY (issuance_id, target)
);

CREATE TABLE checkpoints (
  id         INTEGER PRIMARY KEY,
  seq        INTEGER NOT NULL,
  hash       TEXT NOT NULL,
  ts         TEXT NOT NULL,
  key_uri    TEXT NOT NULL,
  spki       BLOB NOT NULL,
  signature  BLOB NOT NULL
);
`,
};
