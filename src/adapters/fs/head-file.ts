/** The file a station keeps its signed log head in (audit.headStore "signed-head"). */
import { existsSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { HeadFile } from "../../domain/ports.js";
import { writeFileAtomic } from "./atomic.js";
import { readTextBounded } from "./bounded-read.js";

/** A head file is a few hundred bytes; anything larger is not one. */
const HEAD_FILE_LIMIT = 8 * 1024;

export function fileHeadFile(path: string): HeadFile {
  return {
    path,
    read: () =>
      existsSync(path) ? readTextBounded(path, "the log head file", HEAD_FILE_LIMIT) : null,
    write: (text) => {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      writeFileAtomic(path, text, { mode: 0o600 });
    },
  };
}
