/**
 * 010: what a station in its first year needs recorded. `cas.retired_at`: the
 * CA no longer signs here (a rotation moved its profiles on) while it stays
 * ACTIVE at AWS IoT, so devices already shipped keep registering just in
 * time. `config_record`: the station configuration as the station last wrote
 * or accepted it, to tell a hand edit of station.json at start.
 */
export const migration = {
  version: 10,
  name: "retired CAs and the recorded configuration",
  sql: `
ALTER TABLE cas ADD COLUMN retired_at TEXT;
CREATE TABLE config_record (
  id          INTEGER PRIMARY KEY CHECK (id = 1),
  sha256      TEXT NOT NULL,
  config      TEXT NOT NULL,
  recorded_at TEXT NOT NULL
);
`,
};
