import { defineConfig } from "vitest/config";

/**
 * Files whose assertions hang on wall-clock time at the far end (request rates seen by the
 * emulator, the kiosk's real idle window, crash timing, floods, bench figures). They run after
 * the others, one at a time, with the machine to themselves.
 */
const alone = [
  // The serial protocol's own timeouts (a hello of 200 ms) against a station that shares its core.
  "test/e2e/line.test.ts",
  "test/e2e/sync.test.ts",
  "test/e2e/sync-pacing.test.ts",
  "test/e2e/kiosk-shift.test.ts",
  "test/e2e/kiosk-restart.test.ts",
  "test/e2e/kiosk-launch.test.ts",
  "test/e2e/line-crash.test.ts",
  "test/e2e/bench.test.ts",
  "test/e2e/connection-flood.test.ts",
  "test/e2e/line-flood.test.ts",
  "test/unit/app/pacer.test.ts",
];

/** What every file runs under. */
const common = {
  // SoftHSM tokens and SQLite files are real; one process per file keeps PKCS#11 state apart.
  pool: "forks",
  testTimeout: 60_000,
  hookTimeout: 120_000,
} as const;

export default defineConfig({
  test: {
    ...common,
    // End-to-end tests run the built CLI: build dist/ once before any test file. Only here:
    // a project that extended this file would build again.
    globalSetup: ["test/helpers/global-setup.ts"],
    projects: [
      {
        test: {
          ...common,
          name: "shared",
          include: ["test/**/*.test.ts"],
          exclude: alone,
          // Most files wait on the CLI, the token or a pty far more than they compute: two files
          // at once keep both cores busy. Every file makes its own homes, tokens and ports.
          maxWorkers: 2,
          // Two files at once take each other's core at times: a case's wall-clock limit doubles.
          testTimeout: 120_000,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          ...common,
          name: "alone",
          include: alone,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
