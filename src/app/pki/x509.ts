/** @peculiar/x509 2.x needs reflect-metadata loaded before first use; import x509 from here. */
import "reflect-metadata";
export * as x509 from "@peculiar/x509";
