/**
 * The loopback kiosk's pairing key. A browser that opened the address the
 * service printed (with its per-start secret) is given this key in a cookie
 * (HttpOnly, SameSite=Strict); the key is kept in the station home, readable
 * by the station's user only, so a paired kiosk reconnects by itself after
 * the service restarts, and a kiosk browser is started with the plain
 * address: no secret on any command line. Deleting the file unpairs every
 * kiosk.
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
    const text = readTextBounded(path, "the kiosk pairing key", READ_LIMITS.small).trim();
    if (KEY.test(text)) return text;
  }
  const key = randomBytes(32).toString("base64url");
  writeFileAtomic(path, `${key}\n`, { mode: 0o600 });
  return key;
}
