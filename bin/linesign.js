#!/usr/bin/env node
// Entry point of the `linesign` command: runs the built CLI (dist/cli, bundled by
// `npm run build`: a few files to load instead of a few hundred modules). The
// online machine's commands (upload, uploader init) run without the station, so
// they load none of its native modules (PKCS#11, SQLite, serial port).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const main = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  console.error(
    'linesign is not built yet: run "npm ci && npm run build" in the repository first.',
  );
  process.exit(2);
}
const argv = process.argv.slice(2);
const online = await import(new URL("../dist/cli/online.js", import.meta.url).href);
if (online.isOnlineCommand(argv)) {
  process.exitCode = await online.runOnline(argv, online.processIo());
} else {
  const { run } = await import(main.href);
  process.exitCode = await run(argv);
}
