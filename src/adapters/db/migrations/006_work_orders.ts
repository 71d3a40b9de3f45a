/**
 * 006: work orders. The line provisions only against an open work order: a
 * profile, a quantity, optionally a device-id pattern or list, and a window.
 * Issuances already carry their work order (issuances.work_order).
 */
export const migration = {
  version: 6,
  name: "work orders",
  sql: `
CREATE TABLE work_orders (
  id          TEXT PRIMARY KEY,
  profile     TEXT NOT NULL,
  quantity    INTEGER NOT NULL CHECK (quantity > 0),
  pattern     TEXT,
  devices     TEXT,
  not_before  TEXT,
  not_after   TEXT,
  status      TEXT NOT NULL CHECK (status IN ('open', 'closed')),
  created_by  TEXT NOT NULL,
  created_at  TEXT NOT NULL
);
CREATE INDEX issuances_work_order ON issuances(work_order);
`,
};
