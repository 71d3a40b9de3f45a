/** The station's database as another process reads it (its own read-only connection), for assertions. */
import { join } from "node:path";
import Database from "better-sqlite3";

/** The rows `sql` selects from `<home>/station.db`. */
export function stationRows<T>(home: string, sql: string): T[] {
  const db = new Database(join(home, "station.db"), { readonly: true });
  try {
    return db.prepare(sql).all() as T[];
  } finally {
    db.close();
  }
}

/** How many rows `table` of `<home>/station.db` holds. */
export const stationCount = (home: string, table: string): number =>
  stationRows<{ n: number }>(home, `SELECT count(*) AS n FROM ${table}`)[0]!.n;
