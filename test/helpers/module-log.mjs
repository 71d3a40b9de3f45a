// Loaded with `node --import` (NODE_OPTIONS): writes every module the process loads to the
// file named by LINESIGN_MODULE_LOG, one a line. ES modules are seen by a resolve hook as they
// are imported; CommonJS modules and native addons (.node) are read from the require cache
// when the process exits.
import Module, { register } from "node:module";
import { appendFileSync } from "node:fs";

const log = process.env.LINESIGN_MODULE_LOG;
if (!log) throw new Error("module-log.mjs needs LINESIGN_MODULE_LOG");
register(
  "data:text/javascript," +
    encodeURIComponent(`
import { appendFileSync } from "node:fs";
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  appendFileSync(${JSON.stringify(log)}, resolved.url + "\\n");
  return resolved;
}`),
);
process.on("exit", () => {
  appendFileSync(log, Object.keys(Module._cache).join("\n") + "\n");
});
