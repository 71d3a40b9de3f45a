import { tokenContract } from "./contract.js";

tokenContract("tpm2-pkcs11", {
  unfit: {},
  signWith: {
    "ec-p256": "CKM_ECDSA_SHA256",
    "ec-p384": "CKM_ECDSA_SHA384",
    "rsa-2048": "CKM_SHA256_RSA_PKCS",
    "rsa-3072": "CKM_SHA256_RSA_PKCS",
  },
  engineLogin: false,
  caKey: "ec-p256",
  auditKey: "ec-p256",
});
