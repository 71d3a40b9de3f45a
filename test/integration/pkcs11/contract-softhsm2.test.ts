import { tokenContract } from "./contract.js";

tokenContract("softhsm2", {
  unfit: {},
  // SoftHSM 2.6 has no CKM_ECDSA_SHA256: the station hashes, the token signs the digest.
  signWith: {
    "ec-p256": "CKM_ECDSA",
    "ec-p384": "CKM_ECDSA",
    "rsa-2048": "CKM_SHA256_RSA_PKCS",
    "rsa-3072": "CKM_SHA256_RSA_PKCS",
  },
  engineLogin: true,
  caKey: "ec-p256",
  auditKey: "ec-p256",
  // A public data object made in the user session is read without login (the auditor's head).
  publicDataObjects: true,
});
