/**
 * Who may run what. Every CLI command has a rule here (a test walks the
 * command tree and fails on a command without one). "any" means every
 * signed-in role may read; "none" means the command needs no station user
 * (it makes the station, or runs where there is none).
 */
export const ROLES = ["operator", "officer", "auditor", "sync"] as const;
export type Role = (typeof ROLES)[number];

export type Rule = readonly Role[] | "any" | "none";

const O = ["officer"] as const;

export const COMMAND_ROLES: Readonly<Record<string, Rule>> = {
  init: "none",
  demo: "none",
  bench: "none",
  upload: "none",
  "uploader init": "none",
  "uploader enroll": O,
  "uploader list": "any",
  // The service signs in each kiosk caller itself, per call, against src/domain/kiosk-api.ts.
  serve: "none",
  // The station's own account starts the browser; the kiosk signs its users in itself.
  kiosk: "none",
  status: "any",
  "token list": "any",
  // Reads a token's facts (any module, with or without a station); the PIN is the token's own gate.
  "token probe": "none",
  "token probe --record": O,
  "token init": O,
  "token unlock": O,
  "token pin": O,
  "ca create": O,
  "ca import": O,
  "ca list": "any",
  "ca activate": O,
  "ca deactivate": O,
  "ca export": "any",
  "ca verification-cert": O,
  "ca rotate": O,
  "ca retire": O,
  "profile list": "any",
  "profile show": "any",
  "profile create": O,
  "profile set": O,
  "config accept": O,
  issue: O,
  revoke: O,
  "reissue approve": O,
  "reissue list": ["officer", "auditor"],
  crl: O,
  "work-order create": O,
  "work-order list": "any",
  "work-order close": O,
  "line run": ["operator", "officer"],
  "line ports": "any",
  "target add": O,
  "target list": "any",
  "target remove": O,
  sync: ["sync", "officer"],
  // Auditors read the recorded station certificate; making one (and the ceremony) is an officer's.
  "station-cert": ["officer", "auditor"],
  "station-cert --root": O,
  export: ["sync", "officer"],
  "import-receipt": ["sync", "officer"],
  "audit log": ["auditor", "officer"],
  "audit verify": ["auditor", "officer"],
  "audit report": ["auditor", "officer"],
  "audit export": ["auditor", "officer"],
  "audit accept-loss": O,
  "audit rollover": O,
  "user add": O,
  "user list": ["officer", "auditor"],
  "user disable": O,
  "user reset": O,
  // Break-glass: whoever proves the token's SO PIN, so a station whose every officer is locked goes on.
  "user unlock": "none",
  "user passphrase": "any",
  backup: ["officer", "sync"],
  // The officer signs in against the restored users (and proves the token's PIN).
  restore: O,
};

export function isAllowed(rule: Rule, role: Role): boolean {
  return rule === "any" || rule === "none" || rule.includes(role);
}
