/**
 * What strict readers see: every kind of certificate and CRL the station
 * writes is canonical DER (strict reader, re-encoding by another encoder,
 * RFC 5280 list rules), authority key identifiers are the issuer's own
 * subject key identifiers, and `ca import` refuses CA certificates that could
 * not issue what the station issues. Through the CLI; chains checked with openssl.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AsnConvert } from "@peculiar/asn1-schema";
import * as asn1 from "@peculiar/asn1-x509";
import { beforeAll, describe, expect, it } from "vitest";
import { openssl } from "../helpers/cli.js";
import { expectCanonicalCertificate, expectCanonicalCrl } from "../helpers/der.js";
import {
  devStation,
  makeOpensslRoot,
  signWithOpensslRoot,
  type TestStation,
} from "../helpers/station.js";

let s: TestStation;
const CODE = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

const exports = new Map<string, string>();
const exported = (label: string): string => {
  const known = exports.get(label);
  if (known) return known;
  const out = join(s.hsm.dir, `${label}.pem`);
  const r = s.run(["ca", "export", "--label", label, "--out", out]);
  expect(r.code, r.stderr).toBe(0);
  exports.set(label, out);
  return out;
};
// Each step runs the CLI, which on a loaded machine takes seconds.
const SLOW = { timeout: 600_000 };
const ext = (c: asn1.Certificate | asn1.CertificateList, oid: string): ArrayBuffer | undefined => {
  const list =
    c instanceof asn1.Certificate ? c.tbsCertificate.extensions : c.tbsCertList.crlExtensions;
  return list?.find((e) => e.extnID === oid)?.extnValue.buffer;
};
const hexOf = (b: ArrayBuffer): string => Buffer.from(b).toString("hex");
const ski = (c: asn1.Certificate): string =>
  hexOf(
    AsnConvert.parse(ext(c, asn1.id_ce_subjectKeyIdentifier)!, asn1.SubjectKeyIdentifier).buffer,
  );
const aki = (c: asn1.Certificate | asn1.CertificateList): string =>
  hexOf(
    AsnConvert.parse(ext(c, asn1.id_ce_authorityKeyIdentifier)!, asn1.AuthorityKeyIdentifier)
      .keyIdentifier!.buffer,
  );
const certOf = (file: string): asn1.Certificate =>
  expectCanonicalCertificate(readFileSync(file, "utf8"));

function create(label: string, key: string, signing: string[]): void {
  const r = s.run([
    "ca",
    "create",
    "--label",
    label,
    "--key",
    key,
    "--subject",
    `CN=${label}`,
    ...signing,
  ]);
  expect(r.code, r.stdout + r.stderr).toBe(0);
}

beforeAll(() => {
  s = devStation();
  // ica-rsa under an EC root, ica-p384 under an RSA root: each signature algorithm over each key.
  create("root-p384", "ec-p384", ["--self-signed"]);
  create("root-rsa", "rsa-2048", ["--self-signed"]);
  create("ica-rsa", "rsa-2048", ["--root", "root-p384"]);
  create("ica-p384", "ec-p384", ["--root", "root-rsa"]);
}, 600_000);

describe("CA certificates", () => {
  it(
    "are canonical DER for each key type and path, naming their issuer by its own key identifier",
    SLOW,
    () => {
      const issuers: Record<string, string> = {
        "dev-root": "dev-root",
        "dev-ica": "dev-root",
        "root-p384": "root-p384",
        "root-rsa": "root-rsa",
        "ica-rsa": "root-p384",
        "ica-p384": "root-rsa",
      };
      for (const [label, issuer] of Object.entries(issuers)) {
        const cert = certOf(exported(label));
        expect(aki(cert), label).toBe(ski(certOf(exported(issuer))));
        expect(
          openssl([
            "verify",
            "-CAfile",
            exported(issuer),
            ...(label === issuer ? [] : []),
            exported(label),
          ]).out,
          label,
        ).toContain(": OK");
      }
    },
  );
});

describe("verification certificates", () => {
  it(
    "carry a subject key identifier and the CA's own as authority key identifier, for EC and RSA CAs",
    SLOW,
    () => {
      for (const [label, root] of [
        ["dev-ica", "dev-root"],
        ["ica-rsa", "root-p384"],
        ["ica-p384", "root-rsa"],
      ] as const) {
        const out = join(s.hsm.dir, `verification-${label}.pem`);
        const r = s.run([
          "ca",
          "verification-cert",
          "--label",
          label,
          "--registration-code",
          CODE,
          "--out",
          out,
        ]);
        expect(r.code, r.stderr).toBe(0);
        const cert = certOf(out);
        expect(ext(cert, asn1.id_ce_subjectKeyIdentifier), label).toBeDefined();
        expect(aki(cert)).toBe(ski(certOf(exported(label))));
        expect(
          openssl(["verify", "-CAfile", exported(root), "-untrusted", exported(label), out]).out,
        ).toContain(": OK");
      }
    },
  );
});

/** An offline root made with openssl, its subject key identifier not the SHA-1 of its key. */
function oddRoot(name: string): { cert: string; key: string } {
  return makeOpensslRoot(s, name, [
    "subjectKeyIdentifier=0123456789abcdef0123456789abcdef",
    // Without this openssl would name the root's issuer by the SHA-1 of its key: not itself.
    "authorityKeyIdentifier=none",
  ]);
}

function pending(label: string): string {
  const csr = join(s.hsm.dir, `${label}.csr`);
  create(label, "ec-p256", ["--csr-out", csr]);
  return csr;
}

describe("a CA under a root with another key-identifier method", () => {
  it(
    "gets a verification certificate and CRLs that openssl verifies and finds with -crl_check",
    SLOW,
    () => {
      const root = oddRoot("odd-root");
      const csr = pending("odd-ica");
      const signed = signWithOpensslRoot(
        s,
        csr,
        root,
        "odd-ica-cert",
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n" +
          "subjectKeyIdentifier=fedcba9876543210fedcba9876543210\nauthorityKeyIdentifier=keyid\n",
      );
      const imported = s.run([
        "ca",
        "import",
        "--label",
        "odd-ica",
        "--cert",
        signed,
        "--chain",
        root.cert,
        "--json",
      ]);
      expect(imported.code, imported.stdout).toBe(0);
      const vc = join(s.hsm.dir, "odd-verification.pem");
      expect(
        s.run([
          "ca",
          "verification-cert",
          "--label",
          "odd-ica",
          "--registration-code",
          CODE,
          "--out",
          vc,
        ]).code,
      ).toBe(0);
      expect(aki(certOf(vc))).toBe("fedcba9876543210fedcba9876543210");
      const crl = join(s.hsm.dir, "odd.crl.pem");
      expect(s.run(["crl", "--ca", "odd-ica", "--out", crl]).code).toBe(0);
      expect(aki(expectCanonicalCrl(readFileSync(crl, "utf8")))).toBe(
        "fedcba9876543210fedcba9876543210",
      );
      const verified = openssl([
        "verify",
        "-crl_check",
        "-CRLfile",
        crl,
        "-CAfile",
        root.cert,
        "-untrusted",
        exported("odd-ica"),
        vc,
      ]);
      expect(verified.out).toContain(": OK");
    },
  );
});

describe("ca import", () => {
  it(
    "refuses a CA certificate that cannot issue what the station issues, naming what it lacks",
    SLOW,
    () => {
      const root = oddRoot("weak-root");
      const csr = pending("weak-ica");
      const base = "basicConstraints=critical,CA:TRUE,pathlen:0\n";
      const cases = [
        {
          name: "no-keycertsign",
          exts: base + "keyUsage=critical,cRLSign\n",
          property: "keyUsage.keyCertSign",
          says: /keyCertSign/,
        },
        {
          name: "no-crlsign",
          exts: base + "keyUsage=critical,keyCertSign\n",
          property: "keyUsage.cRLSign",
          says: /cRLSign/,
        },
        { name: "no-keyusage", exts: base, property: "keyUsage", says: /no keyUsage/ },
        {
          name: "server-only",
          exts: base + "keyUsage=critical,keyCertSign,cRLSign\nextendedKeyUsage=serverAuth\n",
          property: "extendedKeyUsage",
          says: /without clientAuth/,
        },
        {
          name: "sha1",
          exts: base + "keyUsage=critical,keyCertSign,cRLSign\n",
          digest: "-sha1",
          property: "signatureAlgorithm",
          says: /SHA-1.*SHA-256 or stronger/,
        },
      ];
      for (const c of cases) {
        const cert = signWithOpensslRoot(s, csr, root, `weak-${c.name}`, c.exts, c.digest);
        const r = s.run([
          "ca",
          "import",
          "--label",
          "weak-ica",
          "--cert",
          cert,
          "--chain",
          root.cert,
          "--json",
        ]);
        expect(r.code, c.name).toBe(1);
        expect(r.json.error, c.name).toMatchObject({ code: "CA_CERT_UNSUITABLE" });
        expect(r.json.error!.message, c.name).toMatch(c.says);
        const ev = s
          .events()
          .filter((e) => e.action === "ca.import")
          .at(-1)!;
        expect(ev).toMatchObject({ outcome: "refused", code: "CA_CERT_UNSUITABLE" });
        expect(JSON.parse(ev.details), c.name).toMatchObject({ property: c.property });
      }
      const list = s.run(["ca", "list", "--json"]).json.cas as { label: string; status: string }[];
      expect(list.find((c) => c.label === "weak-ica")!.status).toBe("pending");
      // With what it needs, the same request imports.
      const good = signWithOpensslRoot(
        s,
        csr,
        root,
        "weak-good",
        base + "keyUsage=critical,keyCertSign,cRLSign\nextendedKeyUsage=clientAuth\n",
      );
      expect(
        s.run(["ca", "import", "--label", "weak-ica", "--cert", good, "--chain", root.cert]).code,
      ).toBe(0);
    },
  );
});
