import { execFileSync } from "node:child_process";

/** Builds dist/ so end-to-end tests run the same code `npx linesign` runs. */
export default function setup(): void {
  execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json"], {
    stdio: "inherit",
  });
}
