/**
 * 005: revocation and CRLs. A revoked issuance keeps its row (state REVOKED);
 * this table says why, when and who. Each CRL the station signs is kept with
 * its number, which only grows per CA.
 */
export const migration = {
  version: 5,
  name: "revocations and CRLs",
  sql: `
CREATE TABLE revocations (
  issuance_id  INTEGER PRIMARY KEY REFERENCES issuances(id),
  reason       TEXT NOT NULL,
  revoked_at   TEXT NOT NULL,
  actor        TEXT NOT NULL
);

CREATE TABLE crls (
  ca_label     TEXT NOT NULL REFERENCES cas(label),
  number       INTEGER NOT NULL,
  this_update  TEXT NOT NULL,
  next_update  TEXT NOT NULL,
  entries      INTEGER NOT NULL,
  der          BLOB NOT NULL,
  PRIMARY KEY (ca_label, number)
);
`,
};
