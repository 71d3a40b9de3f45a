/**
 * A signed receipt for a bundle the station exported, as an online uploader
 * writes one after AWS IoT registered everything in it: AWS's id for each
 * certificate is its SHA-256, its ARN is in the target's region and account.
 * For tests of the station's import, which checks every one of those facts.
 */
import { randomUUID } from "node:crypto";
import {
  sha256,
  signReceipt,
  type BundleFile,
  type BundleManifest,
  type ReceiptBody,
  type UploaderIdentity,
} from "../../src/app/sync/bundle-format.js";

export function receiptFor(
  bundleText: string,
  uploader: UploaderIdentity,
  o: { region: string; account: string },
): string {
  const file = JSON.parse(bundleText) as BundleFile;
  const m = JSON.parse(file.manifest) as BundleManifest;
  const arn = (kind: "cert" | "cacert", id: string) =>
    `arn:aws:iot:${o.region}:${o.account}:${kind}/${id}`;
  const body: ReceiptBody = {
    id: randomUUID(),
    bundleId: m.id,
    station: m.station,
    target: m.target,
    manifestSha256: sha256(file.manifest),
    createdAt: new Date().toISOString(),
    region: o.region,
    endpoint: `https://iot.${o.region}.amazonaws.com`,
    account: o.account,
    cas: m.cas.map((c) => ({
      label: c.label,
      certificateId: c.sha256,
      arn: arn("cacert", c.sha256),
      mode: m.targetConfig.caMode,
      status: c.active ? "ACTIVE" : "INACTIVE",
    })),
    devices: m.devices.map((d) => ({
      serial: d.serial,
      sha256: d.sha256,
      state: "done",
      certificateId: d.sha256,
      arn: arn("cert", d.sha256),
      error: null,
    })),
    revoked: [],
    identity: [],
    policies: [],
    summary: {},
  };
  return JSON.stringify(signReceipt(body, uploader), null, 2) + "\n";
}
