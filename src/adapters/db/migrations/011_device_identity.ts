/**
 * 011: the device's identity at AWS beyond its certificate. Issuances keep
 * the model and firmware the device reported when it identified on the line
 * (null for certificates issued otherwise). Each step a target's sync takes
 * for a device (its Thing, the certificate attached to it, the policy
 * attached to the certificate, the Thing added to each group, and their
 * detachment once revoked) is a row written only after AWS answered, so a
 * sync stopped between steps goes on at the next one. A policy a target
 * creates from its document is recorded once per target.
 */
export const migration = {
  version: 11,
  name: "device identity at AWS: Things, policies, groups",
  sql: `
ALTER TABLE issuances ADD COLUMN device_model TEXT;
ALTER TABLE issuances ADD COLUMN device_firmware TEXT;

CREATE TABLE identity_steps (
  issuance_id  INTEGER NOT NULL REFERENCES issuances(id),
  target       TEXT NOT NULL,
  step         TEXT NOT NULL CHECK (step IN ('thing', 'principal', 'policy', 'group', 'complete')),
  name         TEXT NOT NULL,
  state        TEXT NOT NULL CHECK (state IN ('done', 'failed', 'detached')),
  arn          TEXT,
  attempts     INTEGER NOT NULL DEFAULT 0,
  last_error   TEXT,
  updated_at   TEXT NOT NULL,
  PRIMARY KEY (issuance_id, target, step, name)
);
CREATE INDEX identity_steps_target ON identity_steps (target, step, state);

CREATE TABLE target_policies (
  target      TEXT NOT NULL,
  name        TEXT NOT NULL,
  arn         TEXT NOT NULL,
  created     INTEGER NOT NULL,
  updated_at  TEXT NOT NULL,
  PRIMARY KEY (target, name)
);
`,
};
