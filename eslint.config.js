// Dependency direction (docs/design.md) is enforced here, not by memory:
// domain imports nothing outside itself and no node: modules or drivers;
// app reaches the world only through domain ports; each driver has one adapter;
// cli/ and electron/ never import adapters (only src/compose.ts wires them).
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import globals from "globals";

const drivers = [
  "pkcs11js",
  "graphene-pk11",
  "better-sqlite3",
  "serialport",
  "@serialport/*",
  "@aws-sdk/*",
];
const driverPatterns = drivers.map((group) => ({
  group: [group],
  message: "Drivers are imported only by their adapter in src/adapters/.",
}));

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "test-artifacts/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  { languageOptions: { globals: { ...globals.node } } },
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      "no-console": "off",
    },
  },
  {
    files: ["src/domain/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            { group: ["node:*"], message: "domain is pure: no node: modules." },
            {
              group: ["../app/*", "../adapters/*", "../cli/*", "../compose*", "../../*"],
              message: "domain imports nothing of ours outside itself.",
            },
            ...driverPatterns,
          ],
        },
      ],
    },
  },
  {
    files: ["src/app/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["../adapters/*", "../../adapters/*", "../cli/*", "../compose*"],
              message: "app speaks to the world through domain ports.",
            },
            ...driverPatterns,
          ],
        },
      ],
    },
  },
  {
    files: ["src/cli/**/*.ts", "src/service/**/*.ts", "electron/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["../adapters/*", "../../adapters/*", "../src/adapters/*"],
              message: "cli/ and electron/ get adapters through src/compose.ts.",
            },
            ...driverPatterns,
          ],
        },
      ],
    },
  },
);
