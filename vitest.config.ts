import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // SoftHSM tokens and SQLite files are real; one process per file keeps PKCS#11 state apart.
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // End-to-end tests run the built CLI: build dist/ once before any test file.
    globalSetup: ["test/helpers/global-setup.ts"],
  },
});
