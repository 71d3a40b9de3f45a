import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // SoftHSM tokens and SQLite files are real; one fork per file keeps PKCS#11 state per process.
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 60_000,
    setupFiles: ["test/helpers/setup.ts"],
  },
});
