/**
 * The one place the PKCS#11 library is loaded, initialised and finalised.
 * A module may be initialised once per process (a second C_Initialize says
 * ALREADY_INITIALIZED and login state is shared), so loaded modules are
 * reference-counted here and only the last user finalises.
 */
import { existsSync, statSync } from "node:fs";
import pkcs11js from "pkcs11js";
import { LinesignError } from "../../domain/errors.js";

export type Pkcs11 = InstanceType<typeof pkcs11js.PKCS11>;
export { pkcs11js };

interface Loaded {
  lib: Pkcs11;
  users: number;
  libraryParameters: string | undefined;
  /** Bumped at each re-initialisation: sessions opened before it are gone. */
  generation: number;
  /** Calls running on libuv's thread pool now (asynchronous C_Sign). */
  inFlight: number;
  /** Told when inFlight falls to 0. */
  quiet: (() => void)[];
}

function initialise(lib: Pkcs11, libraryParameters: string | undefined): void {
  lib.C_Initialize(
    libraryParameters === undefined
      ? { flags: pkcs11js.CKF_OS_LOCKING_OK }
      : { flags: pkcs11js.CKF_OS_LOCKING_OK, libraryParameters },
  );
}

const loaded = new Map<string, Loaded>();

/**
 * Loads and initialises the module at `path` (with CKF_OS_LOCKING_OK, without
 * which SoftHSM turns its internal locking off). `libraryParameters` are the
 * extra C_Initialize arguments some modules need (NSS's softokn:
 * `configdir='sql:/path' flags=readOnly`); default none. Throws
 * HSM_MODULE_NOT_FOUND or HSM_MODULE_INVALID with what to check.
 */
export function acquireModule(path: string, libraryParameters?: string): Pkcs11 {
  const existing = loaded.get(path);
  if (existing) {
    existing.users++;
    return existing.lib;
  }
  if (!existsSync(path) || !statSync(path).isFile()) {
    throw new LinesignError(
      "HSM_MODULE_NOT_FOUND",
      `The PKCS#11 module ${path} does not exist. Set pkcs11.module in the station config ` +
        `(or LINESIGN_PKCS11_MODULE) to your HSM vendor's library, e.g. /usr/lib/softhsm/libsofthsm2.so.`,
      { details: { module: path } },
    );
  }
  const lib = new pkcs11js.PKCS11();
  try {
    lib.load(path);
  } catch (cause) {
    throw new LinesignError(
      "HSM_MODULE_INVALID",
      `${path} is not a PKCS#11 library (it could not be loaded, or has no C_GetFunctionList). ` +
        `Point pkcs11.module at your HSM vendor's PKCS#11 module.`,
      { cause, details: { module: path } },
    );
  }
  try {
    initialise(lib, libraryParameters);
  } catch (cause) {
    if (!(
      cause instanceof pkcs11js.Pkcs11Error &&
      cause.code === pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED
    )) {
      try {
        lib.close();
      } catch {
        // the load failed half-way; nothing more to release
      }
      const conf = process.env.SOFTHSM2_CONF;
      if (conf && /softhsm/i.test(path) && !existsSync(conf)) {
        throw new LinesignError(
          "HSM_MODULE_INVALID",
          `SoftHSM cannot start: SOFTHSM2_CONF names ${conf}, which does not exist. ` +
            "Point SOFTHSM2_CONF at the token configuration (a development home has its own softhsm2.conf), or unset it.",
          { cause, details: { module: path, conf } },
        );
      }
      throw mapPkcs11Error(cause, "initialising the PKCS#11 module");
    }
  }
  loaded.set(path, { lib, users: 1, libraryParameters, generation: 0, inFlight: 0, quiet: [] });
  return lib;
}

/**
 * Finalises and initialises the module again: after a token's storage went
 * away (a USB HSM re-plugged, SoftHSM's token folder moved) some modules keep
 * answering CKR_GENERAL_ERROR until then. Every session of the process ends.
 * @throws the mapped C_Initialize error (the module stays loaded; call again to retry)
 */
export function reinitialiseModule(path: string): void {
  const entry = loaded.get(path);
  if (!entry) return;
  entry.generation++;
  try {
    entry.lib.C_Finalize();
  } catch {
    // not initialised any more: initialise below
  }
  try {
    initialise(entry.lib, entry.libraryParameters);
  } catch (cause) {
    if (!(
      cause instanceof pkcs11js.Pkcs11Error &&
      cause.code === pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED
    ))
      throw mapPkcs11Error(cause, "initialising the PKCS#11 module again");
  }
}

/**
 * Counts one call the module runs on another thread (pkcs11js's callback
 * form runs on libuv's thread pool) until the returned function is called.
 * PKCS#11 v2.40 (C_Finalize) leaves the behaviour undefined when C_Finalize is
 * called while other threads are making Cryptoki calls, so a re-initialisation
 * waits for these first ({@link untilQuiet}).
 */
export function beginThreadCall(path: string): () => void {
  const entry = loaded.get(path);
  if (!entry) return () => {};
  entry.inFlight++;
  let ended = false;
  return () => {
    if (ended) return;
    ended = true;
    entry.inFlight--;
    if (entry.inFlight === 0) for (const tell of entry.quiet.splice(0)) tell();
  };
}

/** Waits until no call of the module runs on another thread, then runs `then` at once (no await in between). */
async function whenQuiet<T>(path: string, then: () => T): Promise<T> {
  for (;;) {
    const entry = loaded.get(path);
    if (!entry || entry.inFlight === 0) return then();
    await new Promise<void>((r) => entry.quiet.push(r));
  }
}

/** {@link reinitialiseModule} once the calls running on other threads have returned. */
export function reinitialiseWhenQuiet(path: string): Promise<void> {
  return whenQuiet(path, () => reinitialiseModule(path));
}

/** The module's re-initialisation count: sessions opened under an older one are gone. */
export function moduleGeneration(path: string): number {
  return loaded.get(path)?.generation ?? 0;
}

/** Releases one use of the module; the last user finalises and unloads it. */
export function releaseModule(path: string): void {
  const entry = loaded.get(path);
  if (!entry) return;
  entry.users--;
  if (entry.users > 0) return;
  loaded.delete(path);
  try {
    entry.lib.C_Finalize();
  } catch (e) {
    // A re-initialisation that failed (the token's storage was away) left it finalised already.
    if (!(e instanceof pkcs11js.Pkcs11Error && e.code === pkcs11js.CKR_CRYPTOKI_NOT_INITIALIZED))
      throw e;
  } finally {
    entry.lib.close();
  }
}

/** The CKR_* name of a PKCS#11 return code, for logs. */
export function ckrName(code: number): string {
  for (const [name, value] of Object.entries(pkcs11js)) {
    if (name.startsWith("CKR_") && value === code) return name;
  }
  return `0x${code.toString(16)}`;
}

/**
 * Maps a driver error to a LinesignError with an operator-safe message.
 * `doing` says what the station was doing, in plain words.
 */
export function mapPkcs11Error(e: unknown, doing: string, tokenLabel?: string): LinesignError {
  if (e instanceof LinesignError) return e;
  const token = tokenLabel ? ` "${tokenLabel}"` : "";
  if (e instanceof pkcs11js.Pkcs11Error) {
    const name = ckrName(e.code);
    const details = { ckr: name, method: e.method, token: tokenLabel };
    switch (e.code) {
      case pkcs11js.CKR_PIN_INCORRECT:
      case pkcs11js.CKR_PIN_LEN_RANGE:
      case pkcs11js.CKR_PIN_INVALID:
        return new LinesignError(
          "HSM_PIN_INCORRECT",
          `The PIN for token${token} is incorrect. Check LINESIGN_USER_PIN (or what you typed); ` +
            `repeated wrong PINs lock the token.`,
          { cause: e, details },
        );
      case pkcs11js.CKR_PIN_LOCKED:
      case pkcs11js.CKR_PIN_EXPIRED:
        return new LinesignError(
          "HSM_PIN_LOCKED",
          `The PIN of token${token} is locked after too many wrong attempts. ` +
            `A security officer must unlock it with the SO PIN (see hsm/README.md).`,
          { cause: e, details },
        );
      case pkcs11js.CKR_TOKEN_NOT_PRESENT:
      case pkcs11js.CKR_DEVICE_REMOVED:
      case pkcs11js.CKR_TOKEN_NOT_RECOGNIZED:
        return new LinesignError(
          "HSM_TOKEN_NOT_FOUND",
          `Token${token} is not present. Check that the HSM is connected and try again.`,
          { cause: e, details },
        );
      case pkcs11js.CKR_MECHANISM_INVALID:
      case pkcs11js.CKR_MECHANISM_PARAM_INVALID:
      case pkcs11js.CKR_KEY_TYPE_INCONSISTENT:
      case pkcs11js.CKR_KEY_SIZE_RANGE:
      case pkcs11js.CKR_DOMAIN_PARAMS_INVALID:
        return new LinesignError(
          "HSM_MECHANISM_UNSUPPORTED",
          `Token${token} does not support this key type or mechanism while ${doing}. ` +
            `See hsm/README.md for the mechanisms each HSM model is known to support.`,
          { cause: e, details },
        );
      default:
        return new LinesignError(
          "HSM_ERROR",
          `The HSM refused while ${doing} (${name}). Check the token and try again; the station log has the details.`,
          { cause: e, details },
        );
    }
  }
  return new LinesignError(
    "HSM_ERROR",
    `The PKCS#11 module failed while ${doing}. The station log has the details.`,
    { cause: e },
  );
}
