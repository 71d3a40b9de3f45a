/**
 * What the preload puts on `window.linesign`: one named function per channel
 * of the contract, each a single call to main. The page gets no ipcRenderer,
 * no event emitter and no way to name a channel the contract does not list.
 */
import { CHANNEL_NAMES } from "../src/domain/kiosk-channels.js";
import type { LinesignApi, Reply } from "../src/domain/kiosk-api.js";

export type Invoke = (channel: string, args: unknown) => Promise<Reply<unknown>>;

export function buildApi(invoke: Invoke): LinesignApi {
  const api: Record<string, (args: unknown) => Promise<Reply<unknown>>> = {};
  for (const name of CHANNEL_NAMES) api[name] = (args: unknown) => invoke(name, args);
  return Object.freeze(api) as unknown as LinesignApi;
}
