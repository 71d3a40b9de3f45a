// Bundles the command line (src/cli/main.ts and src/cli/online.ts) into a few ES modules in
// dist/cli, so a `linesign` process reads a handful of files instead of a few hundred: module
// loading was most of every short command's start-up. Native drivers, and packages that find
// their own files at run time or load on demand, stay outside the bundle and load from
// node_modules as before. tsc still builds dist/src (the kiosk service's worker thread, the
// fixtures and the tests use it); a bundled module's import.meta.url is the URL of its tsc
// output there, so paths it makes relative to itself (package.json, the kiosk page, the
// fixtures, the issuance worker) stay what they were.
import { dirname, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";

const root = fileURLToPath(new URL(".", import.meta.url));
const outDir = `${root}dist/cli`;

/** Loaded from node_modules at run time, not bundled. */
const external = [
  // Native addons (and what loads them).
  "better-sqlite3",
  "pkcs11js",
  "graphene-pk11",
  "serialport",
  /^@serialport\//,
  // Loaded on demand by the few commands that use them (sync, upload, export, backup).
  /^@aws-sdk\//,
  /^@smithy\//,
  "tar-stream",
];

/** Gives each module of src/ the import.meta.url of its own file in dist/src. */
function moduleUrls(): Plugin {
  return {
    name: "linesign-module-urls",
    enforce: "pre",
    transform(code, id) {
      if (!id.startsWith(`${root}src/`) || !code.includes("import.meta.url")) return null;
      const built = `${root}dist/${relative(root, id).replace(/\.ts$/, ".js")}`;
      const rel = JSON.stringify(relative(outDir, dirname(built)) + "/" + built.split("/").pop());
      return {
        code: code.replaceAll("import.meta.url", `new URL(${rel}, import.meta.url).href`),
        map: null,
      };
    },
  };
}

export default defineConfig({
  logLevel: "warn",
  plugins: [moduleUrls()],
  ssr: { noExternal: true, external: [], target: "node" },
  build: {
    ssr: true,
    outDir,
    emptyOutDir: true,
    sourcemap: true,
    minify: false,
    target: "node20",
    rolldownOptions: {
      input: {
        main: fileURLToPath(new URL("./src/cli/main.ts", import.meta.url)),
        online: fileURLToPath(new URL("./src/cli/online.ts", import.meta.url)),
      },
      external,
      output: {
        format: "esm",
        entryFileNames: "[name].js",
        chunkFileNames: "[name]-[hash].js",
      },
    },
  },
});
