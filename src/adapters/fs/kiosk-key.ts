/**
 * The loopback kiosk's stable key. A kiosk page that holds the service's
 * per-start secret (a redeemed one-time ticket, or the printed address) is
 * given this key into its memory only (never a cookie or the browser's
 * storage), and calls with it, so it reconnects by itself after the service
 * restarts. The key is kept in the station home, readable by the station's
 * user only. Deleting the file (then restarting the service) ends every
 * kiosk's access.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { writeFileAtomic } from "./atomic.js";
import { READ_LIMITS, readTextBounded } from "./bounded-read.js";

const KEY = /^[A-Za-z0-9_-]{43}$/;

/**
 * The key in `path`, made (0600, written whole) when there is none or what
 * is there is not one.
 * @throws LinesignError FILE_READ_FAILED (the file is there but cannot be read), FILE_WRITE_FAILED
 */
export function loadKioskKey(path: string): string {
  if (existsSync(path)) {
    const text = readTextBounded(path, "the kiosk key", READ_LIMITS.small).trim();
    if (KEY.test(text)) return text;
  }
  const key = randomBytes(32).toString("base64url");
  writeFileAtomic(path, `${key}\n`, { mode: 0o600 });
  return key;
}
