/**
 * Software keys in PKCS#8 PEM files (mode 0600), used only for the
 * development root that `init --dev` makes. Production CA keys live in a token.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  type KeyObject,
} from "node:crypto";
import { READ_LIMITS, readFileBounded } from "./bounded-read.js";
import { LinesignError } from "../../domain/errors.js";
import { signatureHash, type KeyType } from "../../domain/keys.js";
import type { Signer, SoftwareKeyStore } from "../../domain/ports.js";
import { writeFileAtomic } from "./atomic.js";

function signerOf(path: string, privateKey: KeyObject): Signer {
  const details = privateKey.asymmetricKeyDetails;
  let keyType: KeyType;
  if (privateKey.asymmetricKeyType === "ec") {
    keyType = details?.namedCurve === "secp384r1" ? "ec-p384" : "ec-p256";
  } else {
    keyType = details?.modulusLength === 3072 ? "rsa-3072" : "rsa-2048";
  }
  const spki = new Uint8Array(createPublicKey(privateKey).export({ type: "spki", format: "der" }));
  const hash = signatureHash(keyType) === "SHA-384" ? "sha384" : "sha256";
  return {
    key: { uri: new URL(`file://${path}`).href, keyType, spki },
    sign: async (message) =>
      new Uint8Array(sign(hash, message, { key: privateKey, dsaEncoding: "ieee-p1363" })),
  };
}

export class FileSoftwareKeyStore implements SoftwareKeyStore {
  async generate(path: string, keyType: KeyType): Promise<Signer> {
    const { privateKey } =
      keyType === "ec-p256" || keyType === "ec-p384"
        ? generateKeyPairSync("ec", { namedCurve: keyType === "ec-p256" ? "P-256" : "P-384" })
        : generateKeyPairSync("rsa", { modulusLength: keyType === "rsa-2048" ? 2048 : 3072 });
    const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    writeFileAtomic(path, pem, { mode: 0o600, exclusive: true });
    return signerOf(path, privateKey);
  }

  async load(path: string): Promise<Signer> {
    try {
      return signerOf(
        path,
        createPrivateKey(Buffer.from(readFileBounded(path, "the software key", READ_LIMITS.small))),
      );
    } catch (cause) {
      throw new LinesignError(
        "HSM_KEY_NOT_FOUND",
        `The development root key ${path} is missing or unreadable.`,
        { cause },
      );
    }
  }
}
