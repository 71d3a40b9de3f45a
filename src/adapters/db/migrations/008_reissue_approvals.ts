/**
 * 008: re-issue approvals. A device that already has a live certificate gets
 * another only when its profile allows re-issue, or when an officer approved
 * one re-issue for it; the approval is used by exactly one issuance.
 */
export const migration = {
  version: 8,
  name: "re-issue approvals",
  sql: `
CREATE TABLE reissue_approvals (
  id           INTEGER PRIMARY KEY,
  device_id    TEXT NOT NULL,
  reason       TEXT NOT NULL,
  approved_by  TEXT NOT NULL,
  approved_at  TEXT NOT NULL,
  issuance_id  INTEGER REFERENCES issuances(id),
  used_at      TEXT
);
CREATE UNIQUE INDEX reissue_approvals_open ON reissue_approvals(device_id) WHERE used_at IS NULL;
`,
};
