/**
 * Append-only list of schema migrations. Each runs once, in order, in its own
 * transaction, and sets PRAGMA user_version to its number. Never edit one that
 * has shipped: add the next.
 */
import { migration as m001 } from "./001_event_log_and_cas.js";
import { migration as m002 } from "./002_pin_guard.js";
import { migration as m003 } from "./003_issuance.js";
import { migration as m004 } from "./004_sync.js";
import { migration as m005 } from "./005_revocation.js";
import { migration as m006 } from "./006_work_orders.js";
import { migration as m007 } from "./007_users.js";
import { migration as m008 } from "./008_reissue_approvals.js";
import { migration as m009 } from "./009_uploaders_and_receipts.js";
import { migration as m010 } from "./010_station_records.js";
import { migration as m011 } from "./011_device_identity.js";
import { migration as m012 } from "./012_events_by_action.js";

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  m001,
  m002,
  m003,
  m004,
  m005,
  m006,
  m007,
  m008,
  m009,
  m010,
  m011,
  m012,
];
