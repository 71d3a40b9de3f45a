// Loaded with `node --import`: makes the station's native modules (and any
// compiled .node addon) unloadable, as on an online machine that has only
// Node and the AWS SDK. Both module systems are covered: ESM through a
// resolve hook, CommonJS through Module._resolveFilename.
import Module, { register } from "node:module";

const NATIVE = /^(better-sqlite3|pkcs11js|graphene-pk11|serialport|@serialport\/)/;
register(
  "data:text/javascript," +
    encodeURIComponent(`
const NATIVE = ${NATIVE};
export async function resolve(specifier, context, next) {
  if (NATIVE.test(specifier) || specifier.endsWith(".node"))
    throw new Error("native module " + specifier + " is not loadable on this machine");
  return next(specifier, context);
}`),
);
const original = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (NATIVE.test(request) || request.endsWith(".node"))
    throw new Error(`native module ${request} is not loadable on this machine`);
  return original.call(this, request, ...rest);
};
