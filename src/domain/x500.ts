/** X.520 attribute types the station reads from requests and writes into certificates. */
export const ATTRIBUTE_OIDS: Readonly<Record<string, string>> = {
  CN: "2.5.4.3",
  O: "2.5.4.10",
  OU: "2.5.4.11",
  C: "2.5.4.6",
  L: "2.5.4.7",
  ST: "2.5.4.8",
  serialNumber: "2.5.4.5",
  emailAddress: "1.2.840.113549.1.9.1",
  DC: "0.9.2342.19200300.100.1.25",
  UID: "0.9.2342.19200300.100.1.1",
};

/** Short names by OID: the inverse of ATTRIBUTE_OIDS. */
export const ATTRIBUTE_NAMES: Readonly<Record<string, string>> = Object.fromEntries(
  Object.entries(ATTRIBUTE_OIDS).map(([name, oid]) => [oid, name]),
);
