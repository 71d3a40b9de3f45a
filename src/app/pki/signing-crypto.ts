/**
 * Lets @peculiar/x509 sign with a key it cannot see. The library calls
 * `crypto.subtle.sign(algorithm, privateKey, tbs)`; this Crypto sends that one
 * call to the Signer port (a token key never leaves the HSM) and everything
 * else (digests, public-key import and export, random values) to the
 * platform's WebCrypto.
 */
import type { Signer } from "../../domain/ports.js";
import { signatureHash, isEc, type KeyType } from "../../domain/keys.js";

type WebCrypto = typeof globalThis.crypto;
type Key = Awaited<ReturnType<WebCrypto["subtle"]["importKey"]>>;

export interface SigningKeyPair {
  /** Pass to @peculiar/x509 generators as their crypto provider. */
  crypto: WebCrypto;
  /** Stand-in CryptoKey that only this crypto can sign with. */
  privateKey: Key;
  /** The real public key, imported from the signer's SPKI. */
  publicKey: Key;
}

/** WebCrypto algorithm of a signer's key, including the hash it signs with. */
export function keyAlgorithm(signer: Signer): WebAlgorithm {
  return keyAlgorithmFor(signer.key.keyType);
}

export interface WebAlgorithm {
  name: string;
  namedCurve?: string;
  hash: { name: string };
}

/** WebCrypto algorithm for a CA key type, including the hash it signs with. */
export function keyAlgorithmFor(keyType: KeyType): WebAlgorithm {
  const hash = { name: signatureHash(keyType) };
  if (isEc(keyType))
    return { name: "ECDSA", namedCurve: keyType === "ec-p256" ? "P-256" : "P-384", hash };
  return { name: "RSASSA-PKCS1-v1_5", hash };
}

/** Builds the crypto and key pair through which `signer` signs certificates and requests. */
export async function signingKeyPair(signer: Signer): Promise<SigningKeyPair> {
  const base = globalThis.crypto;
  const algorithm = keyAlgorithm(signer);
  const importAlg =
    algorithm.name === "ECDSA" ? { name: "ECDSA", namedCurve: algorithm.namedCurve } : algorithm;
  const publicKey = await base.subtle.importKey("spki", signer.key.spki, importAlg as never, true, [
    "verify",
  ]);
  const privateKey = Object.freeze({
    type: "private",
    extractable: false,
    algorithm,
    usages: ["sign"],
  }) as unknown as Key;

  const subtle = new Proxy(base.subtle, {
    get(target, prop) {
      if (prop === "sign") {
        return async (
          _alg: unknown,
          key: Key,
          data: ArrayBuffer | ArrayBufferView,
        ): Promise<ArrayBuffer> => {
          if (key !== privateKey) return target.sign(_alg as never, key, data);
          const bytes = ArrayBuffer.isView(data)
            ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
            : new Uint8Array(data);
          const sig = await signer.sign(bytes);
          return sig.slice().buffer as ArrayBuffer;
        };
      }
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const crypto = {
    subtle,
    getRandomValues: base.getRandomValues.bind(base),
    randomUUID: base.randomUUID.bind(base),
  } as unknown as WebCrypto;
  return { crypto, privateKey, publicKey };
}
