/**
 * The kiosk contract's channel names, without their schemas. The preload and
 * the page's loopback bridge need only the names, so they import this module
 * and carry no schema library; kiosk-api.ts declares each name's schemas and
 * the compiler holds the two lists equal.
 */
export const CHANNEL_NAMES = [
  "auth.login",
  "auth.logout",
  "auth.handover",
  "auth.whoami",
  "kiosk.welcome",
  "station.status",
  "signing.open",
  "signing.close",
  "workOrders.list",
  "workOrders.create",
  "workOrders.close",
  "line.start",
  "line.stop",
  "line.watch",
  "line.acknowledge",
  "line.shift",
  "cas.list",
  "targets.list",
  "audit.verify",
  "audit.log",
  "audit.export",
  "certificates.find",
  "revocation.revoke",
  "reissue.approve",
  "station.backup",
  "cas.activate",
  "cas.deactivate",
  "cas.rotate",
  "cas.publishCrl",
  "exports.list",
  "targets.exportBundle",
  "targets.importReceipt",
] as const;

export type ChannelName = (typeof CHANNEL_NAMES)[number];
