/**
 * docs/schemas/ holds the JSON Schemas of the bundle and receipt formats that
 * docs/offline-bundle.md describes: they are the ones the code validates with.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { describe, expect, it } from "vitest";
import {
  BundleFileSchema,
  BundleManifestSchema,
  ReceiptBodySchema,
  ReceiptFileSchema,
} from "../../../src/app/sync/bundle-format.js";

const doc = (name: string) =>
  JSON.parse(
    readFileSync(new URL(`../../../docs/schemas/${name}`, import.meta.url), "utf8"),
  ) as Record<string, unknown>;

describe("bundle and receipt JSON Schemas", () => {
  it.each([
    ["bundle-3.schema.json", BundleFileSchema],
    ["bundle-manifest-3.schema.json", BundleManifestSchema],
    ["receipt-3.schema.json", ReceiptFileSchema],
    ["receipt-body-3.schema.json", ReceiptBodySchema],
  ] as const)("%s is the schema the code validates with", (name, schema) => {
    const { $id, title, ...rest } = doc(name);
    expect($id).toContain(name);
    expect(title).toContain("Linesign");
    expect(rest).toEqual(z.toJSONSchema(schema, { io: "input" }));
  });
  it("the formats document names every schema", () => {
    const md = readFileSync(new URL("../../../docs/offline-bundle.md", import.meta.url), "utf8");
    for (const n of ["bundle-3", "bundle-manifest-3", "receipt-3", "receipt-body-3"])
      expect(md).toContain(`schemas/${n}.schema.json`);
  });
});
