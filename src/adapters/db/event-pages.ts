/**
 * The columns of a page of the log walk, shared by the store (src/adapters/db/station-store.ts)
 * and the threads that walk ranges of it (log-walk-worker.ts), so both read the same rows.
 */

/** Columns in StoredEvent's order; raw rows (arrays) are the cheapest better-sqlite3 makes. */
export const STORED_COLUMNS =
  "seq, ts, actor, action, subject, outcome, code, message, details, prev_hash, hash, rowid";

// The body storedBody() builds, built by SQLite: json_quote writes exactly the literal
// JSON.stringify does (test/integration/db/station-store.test.ts); CAST keeps a column
// holding another type from failing the query (it then just does not match).
const q = (c: string) => `json_quote(CAST(${c} AS TEXT))`;

/** Columns in EncodedEvent's order. */
export const ENCODED_COLUMNS = `seq, prev_hash, hash,
  '[1,' || seq || ',' || ${["ts", "actor", "action", "subject", "outcome", "code", "message"].map(q).join(" || ',' || ")}
    || ',' || CAST(details AS TEXT) || ']',
  rowid`;
