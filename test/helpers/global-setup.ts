import { execFileSync } from "node:child_process";

/**
 * Builds dist/ so end-to-end tests run the same code `npx linesign` runs:
 * the TypeScript, the command line's bundle, the kiosk page and the Electron preload
 * (the steps of `npm run build`).
 */
export default function setup(): void {
  const run = (args: string[]) => execFileSync(process.execPath, args, { stdio: "inherit" });
  run(["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"]);
  run(["node_modules/vite/bin/vite.js", "build", "--config", "vite.cli.config.ts"]);
  run(["node_modules/vite/bin/vite.js", "build", "--config", "electron/vite.config.ts"]);
  run(["node_modules/vite/bin/vite.js", "build", "--config", "electron/vite.preload.config.ts"]);
}
