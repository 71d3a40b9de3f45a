/**
 * What commands use before, or without, opening a station: bounded reads, atomic writes, the
 * station home's place and the log's chain hash. Nothing here loads a driver, so the command
 * line can register its commands (and answer --help) without the token or the database;
 * src/compose.ts, which wires those, is loaded when a command opens the station.
 */
import type { ChainHash } from "./domain/event-log.js";
import { nodeChainHash } from "./adapters/crypto/chain-hash.js";
import { StationHome } from "./adapters/fs/home.js";

export const chainHash: ChainHash = nodeChainHash;

/** Writes a file atomically (temporary file, fsync, rename): for commands that run without a station home. */
export { writeFileAtomic } from "./adapters/fs/atomic.js";

/** The station home a command names (--home, LINESIGN_HOME, ~/.linesign), checked private. */
export function privateHome(explicit: string | undefined, env: NodeJS.ProcessEnv): string {
  const home = StationHome.locate(explicit, env);
  home.checkPrivate();
  return home.dir;
}
export { readFileBounded, readTextBounded, READ_LIMITS } from "./adapters/fs/bounded-read.js";
