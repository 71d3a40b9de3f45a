/** 001: the tamper-evident event log and the station's CAs. */
export const migration = {
  version: 1,
  name: "event log and CAs",
  sql: `
CREATE TABLE events (
  seq        INTEGER PRIMARY KEY,
  ts         TEXT NOT NULL,
  actor      TEXT NOT NULL,
  action     TEXT NOT NULL,
  subject    TEXT,
  outcome    TEXT NOT NULL CHECK (outcome IN ('ok', 'refused', 'failed')),
  code       TEXT,
  message    TEXT,
  details    TEXT NOT NULL,
  prev_hash  TEXT NOT NULL,
  hash       TEXT NOT NULL
);
-- Casual edits fail here; deliberate ones (dropping the triggers) are caught by the hash chain.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
  BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
  BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;

CREATE TABLE cas (
  label        TEXT PRIMARY KEY,
  kind         TEXT NOT NULL CHECK (kind IN ('root', 'intermediate')),
  status       TEXT NOT NULL CHECK (status IN ('pending', 'active', 'inactive')),
  key_type     TEXT NOT NULL,
  key_uri      TEXT NOT NULL UNIQUE,
  development  INTEGER NOT NULL CHECK (development IN (0, 1)),
  subject      TEXT NOT NULL,
  cert_der     BLOB,
  chain_der    TEXT NOT NULL DEFAULT '[]',
  parent_label TEXT REFERENCES cas(label),
  not_before   TEXT,
  not_after    TEXT,
  fingerprint  TEXT UNIQUE,
  created_at   TEXT NOT NULL
);
`,
};
