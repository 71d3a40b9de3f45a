/**
 * 002: consecutive wrong-PIN counts per token. The station stops presenting
 * PINs to a token after too many failures (a real HSM may lock or zeroise;
 * SoftHSM never locks), until an officer unlocks it with the SO PIN.
 */
export const migration = {
  version: 2,
  name: "PIN guard",
  sql: `
CREATE TABLE pin_guard (
  token      TEXT PRIMARY KEY,
  failures   INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
  locked_at  TEXT
);
`,
};
