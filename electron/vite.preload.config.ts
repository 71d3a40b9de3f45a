// Bundles the sandboxed preload into one CommonJS file (dist/electron/preload.cjs):
// a sandboxed preload can require only "electron", not our other modules.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  logLevel: "warn",
  build: {
    outDir: fileURLToPath(new URL("../dist/electron", import.meta.url)),
    emptyOutDir: false,
    sourcemap: false,
    minify: false,
    target: "node22",
    lib: {
      entry: fileURLToPath(new URL("./preload.ts", import.meta.url)),
      formats: ["cjs"],
      fileName: () => "preload.cjs",
    },
    rolldownOptions: { external: ["electron"] },
  },
});
