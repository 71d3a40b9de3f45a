import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { openssl } from "../helpers/cli.js";
import {
  devStation,
  makeOpensslRoot,
  signWithOpensslRoot,
  type TestStation,
} from "../helpers/station.js";

let s: TestStation;
const pem = (label: string, chain = false): string => {
  const out = s.file(`${label}${chain ? "-chain" : ""}.pem`, "");
  const r = s.run(["ca", "export", "--label", label, ...(chain ? ["--chain"] : []), "--out", out]);
  expect(r.code, r.stderr).toBe(0);
  return out;
};
const text = (file: string): string => openssl(["x509", "-in", file, "-noout", "-text"]).out;

beforeAll(() => {
  s = devStation();
});

describe("linesign init --dev", () => {
  it("makes a token, a development root and an active dev-ica whose key is in the token", () => {
    const r = s.run(["status", "--json"]);
    expect(r.code).toBe(0);
    expect(r.json.development).toBe(true);
    expect(r.json.token).toMatchObject({ label: "linesign-dev", present: true });
    const cas = r.json.cas as {
      label: string;
      status: string;
      keyUri: string;
      development: boolean;
      kind: string;
    }[];
    expect(cas.map((c) => [c.label, c.kind, c.status, c.development])).toEqual([
      ["dev-root", "root", "active", true],
      ["dev-ica", "intermediate", "active", false],
    ]);
    expect(cas[1]!.keyUri).toMatch(
      /^pkcs11:token=linesign-dev;object=dev-ica;id=(%[0-9A-F]{2})+;type=private$/,
    );
    expect(existsSync(join(s.home, "dev-root.key.pem"))).toBe(true);
    expect(openssl(["verify", "-CAfile", pem("dev-root"), pem("dev-ica")]).out).toContain(": OK");
    expect(text(pem("dev-root"))).toContain("DEVELOPMENT ONLY");
  });

  it("changes nothing when run again, and says so", () => {
    const before = s.events().length;
    const r = s.run(["init", "--dev"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("nothing was changed");
    expect(s.events().length).toBe(before);
    const j = s.run(["init", "--dev", "--json"]).json;
    expect(j.changed).toBe(false);
  });
});

describe("linesign init --dev on an older development home", () => {
  it("adds the missing default profile once, and says so", () => {
    const cfgPath = join(s.home, "station.json");
    const cfg = JSON.parse(readFileSync(cfgPath, "utf8")) as { profiles?: unknown };
    delete cfg.profiles;
    writeFileSync(cfgPath, JSON.stringify(cfg));
    const r = s.run(["init", "--dev", "--json"]);
    expect(r.code).toBe(0);
    expect(r.json.changed).toBe(true);
    expect((r.json.dev as { created: string[] }).created).toEqual([
      'profile "default" (on dev-ica)',
    ]);
    expect(JSON.parse(readFileSync(cfgPath, "utf8")).profiles.default.ca).toBe("dev-ica");
    expect(s.events().at(-1)).toMatchObject({ action: "station.config", outcome: "ok" });
    expect(s.run(["init", "--dev", "--json"]).json.changed).toBe(false);
  });
});

describe("linesign ca create", () => {
  it("makes a self-signed EC P-384 CA with the required extensions", () => {
    const r = s.run([
      "ca",
      "create",
      "--label",
      "root-384",
      "--key",
      "ec-p384",
      "--subject",
      "CN=Self Root,O=Linesign Test",
      "--self-signed",
      "--days",
      "400",
      "--json",
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json.ca).toMatchObject({
      label: "root-384",
      kind: "root",
      status: "active",
      keyType: "ec-p384",
    });
    const file = pem("root-384");
    expect(openssl(["verify", "-CAfile", file, file]).out).toContain(": OK");
    const t = text(file);
    expect(t).toMatch(/Basic Constraints: critical\s+CA:TRUE/);
    expect(t).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(t).toContain("Subject Key Identifier");
    expect(t).toContain("Authority Key Identifier");
    expect(t).toContain("ecdsa-with-SHA384");
    const serial = openssl(["x509", "-in", file, "-noout", "-serial"]).out.trim().split("=")[1]!;
    expect(serial.length).toBeGreaterThanOrEqual(16); // at least 64 bits
    const events = s.events().filter((e) => e.action === "ca.create" && e.subject === "root-384");
    expect(events).toHaveLength(1);
    expect(events[0]!.outcome).toBe("ok");
  });

  it("makes an RSA-2048 intermediate signed by another CA (pathLen 0)", () => {
    const r = s.run([
      "ca",
      "create",
      "--label",
      "ica-rsa",
      "--key",
      "rsa-2048",
      "--subject",
      "CN=RSA Line CA,O=Linesign Test",
      "--root",
      "dev-root",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const t = text(pem("ica-rsa"));
    expect(t).toMatch(/CA:TRUE, pathlen:0/);
    expect(t).toContain("ecdsa-with-SHA256"); // signed by the EC development root
    expect(t).toContain("Public-Key: (2048 bit)");
    expect(openssl(["verify", "-CAfile", pem("dev-root"), pem("ica-rsa")]).out).toContain(": OK");
  });

  it("runs the key ceremony: a root in another token signs the line's intermediate", () => {
    const ROOT_PIN = "ceremony-pin-99";
    // The offline root's own token.
    const init = s.run(["token", "init", "--label", "offline-root"], {
      LINESIGN_SO_PIN: "ceremony-so-1",
      LINESIGN_ROOT_PIN: ROOT_PIN,
    });
    expect(init.code, init.stderr).toBe(0);
    expect(s.run(["token", "list", "--json"]).json.tokens).toEqual(
      expect.arrayContaining([expect.objectContaining({ label: "offline-root" })]),
    );
    const again = s.run(["token", "init", "--label", "offline-root", "--json"], {
      LINESIGN_SO_PIN: "x",
      LINESIGN_ROOT_PIN: "y",
    });
    expect(again.code).toBe(1);
    const root = s.run(
      [
        "ca",
        "create",
        "--label",
        "offline-root",
        "--token",
        "offline-root",
        "--key",
        "rsa-3072",
        "--subject",
        "CN=Offline Root,O=Linesign Test",
        "--self-signed",
      ],
      { LINESIGN_ROOT_PIN: ROOT_PIN },
    );
    expect(root.code, root.stderr).toBe(0);
    expect(root.stdout).toContain("pkcs11:token=offline-root;object=offline-root");
    const ica = s.run(
      [
        "ca",
        "create",
        "--label",
        "line-3",
        "--key",
        "ec-p256",
        "--subject",
        "CN=Line 3 CA,O=Linesign Test",
        "--root",
        "offline-root",
      ],
      { LINESIGN_ROOT_PIN: ROOT_PIN },
    );
    expect(ica.code, ica.stderr).toBe(0);
    expect(openssl(["verify", "-CAfile", pem("offline-root"), pem("line-3")]).out).toContain(
      ": OK",
    );
    // The chain export holds the intermediate then the root.
    const chain = readFileSync(pem("line-3", true), "utf8");
    expect(chain.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
  });

  it("writes a request for an offline root and imports the certificate it signs", () => {
    const csr = join(s.hsm.dir, "pending.csr");
    const r = s.run([
      "ca",
      "create",
      "--label",
      "pending-ica",
      "--key",
      "ec-p256",
      "--subject",
      "CN=Pending ICA,O=Linesign Test",
      "--csr-out",
      csr,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(openssl(["req", "-in", csr, "-noout", "-verify"]).out).toMatch(
      /verify OK|Certificate request self-signature verify OK/,
    );
    expect(s.run(["ca", "list", "--json"]).json.cas).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ label: "pending-ica", status: "pending" }),
      ]),
    );

    const root = makeOpensslRoot(s, "paper-root");
    const signed = signWithOpensslRoot(
      s,
      csr,
      root,
      "pending-ica",
      "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    );

    const imported = s.run([
      "ca",
      "import",
      "--label",
      "pending-ica",
      "--cert",
      signed,
      "--chain",
      root.cert,
      "--json",
    ]);
    expect(imported.code, imported.stdout).toBe(0);
    expect(imported.json.ca).toMatchObject({ status: "active", issuer: "CN=paper-root" });
    expect(openssl(["verify", "-CAfile", root.cert, pem("pending-ica")]).out).toContain(": OK");
  });
});

describe("linesign ca verification-cert", () => {
  const code = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
  it("makes a certificate whose CN is exactly the registration code, signed by the CA key in the token", () => {
    const out = join(s.hsm.dir, "verification.pem");
    const r = s.run([
      "ca",
      "verification-cert",
      "--label",
      "dev-ica",
      "--registration-code",
      code,
      "--out",
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(
      openssl(["x509", "-in", out, "-noout", "-subject", "-nameopt", "RFC2253"]).out.trim(),
    ).toBe(`subject=CN=${code}`);
    expect(
      openssl(["verify", "-CAfile", pem("dev-root"), "-untrusted", pem("dev-ica"), out]).out,
    ).toContain(": OK");
    // Its key pair is a throwaway: not the CA's.
    const vk = openssl(["x509", "-in", out, "-noout", "-pubkey"]).out;
    const ck = openssl(["x509", "-in", pem("dev-ica"), "-noout", "-pubkey"]).out;
    expect(vk).not.toBe(ck);
    const ev = s.events().filter((e) => e.action === "ca.verification-cert" && e.outcome === "ok");
    expect(JSON.parse(ev[ev.length - 1]!.details)).toMatchObject({ registrationCode: code });
  });

  it("works for an RSA CA too", () => {
    const r = s.run(["ca", "verification-cert", "--label", "ica-rsa", "--registration-code", code]);
    expect(r.code).toBe(0);
    const f = s.file("v-rsa.pem", r.stdout);
    expect(text(f)).toContain("sha256WithRSAEncryption"); // the RSA key in the token signed it
    expect(
      openssl(["verify", "-CAfile", pem("dev-root"), "-untrusted", pem("ica-rsa"), f]).out,
    ).toContain(": OK");
  });
});

describe("activate, deactivate, list", () => {
  it("changes status, records it, and refuses a no-op", () => {
    expect(s.run(["ca", "deactivate", "--label", "ica-rsa"]).code).toBe(0);
    const list = s.run(["ca", "list", "--json"]).json.cas as { label: string; status: string }[];
    expect(list.find((c) => c.label === "ica-rsa")!.status).toBe("inactive");
    const again = s.run(["ca", "deactivate", "--label", "ica-rsa", "--json"]);
    expect(again.code).toBe(1);
    expect(again.json.error!.code).toBe("CA_STATE");
    expect(s.run(["ca", "activate", "--label", "ica-rsa"]).code).toBe(0);
    const acts = s
      .events()
      .filter(
        (e) =>
          e.subject === "ica-rsa" && e.action.startsWith("ca.") && e.action.endsWith("activate"),
      );
    expect(acts.map((e) => [e.action, e.outcome])).toEqual([
      ["ca.deactivate", "ok"],
      ["ca.deactivate", "refused"],
      ["ca.activate", "ok"],
    ]);
  });

  it("refuses to sign with an inactive CA", () => {
    expect(s.run(["ca", "deactivate", "--label", "root-384"]).code).toBe(0);
    const r = s.run([
      "ca",
      "create",
      "--label",
      "under-inactive",
      "--key",
      "ec-p256",
      "--subject",
      "CN=x",
      "--root",
      "root-384",
      "--json",
    ]);
    expect(r.code).toBe(1);
    expect(r.json.error!.code).toBe("CA_INACTIVE");
  });
});
