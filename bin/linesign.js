#!/usr/bin/env node
// Entry point of the `linesign` command: runs the compiled CLI.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const main = new URL("../dist/src/cli/main.js", import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  console.error(
    'linesign is not built yet: run "npm ci && npm run build" in the repository first.',
  );
  process.exit(2);
}
const { run } = await import(main.href);
process.exitCode = await run(process.argv.slice(2));
