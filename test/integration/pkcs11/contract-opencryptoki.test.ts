import { tokenContract } from "./contract.js";

tokenContract("opencryptoki", {
  // The software token of opencryptoki 3.8 has no elliptic curves at all.
  unfit: { "ec-p256": "CKM_EC_KEY_PAIR_GEN", "ec-p384": "CKM_EC_KEY_PAIR_GEN" },
  // No CKM_SHA256_RSA_PKCS: the station builds the DigestInfo and the token signs it with CKM_RSA_PKCS.
  signWith: { "rsa-2048": "CKM_RSA_PKCS", "rsa-3072": "CKM_RSA_PKCS" },
  engineLogin: true,
  caKey: "rsa-2048",
  auditKey: "rsa-2048",
  // Its software token counts both PINs: COUNT_LOW after one wrong, FINAL_TRY after two, LOCKED at three.
  pinLimits: { user: 3, so: 3 },
  // A public data object made in the user session is read without login (the auditor's head).
  publicDataObjects: true,
});
