/**
 * The kiosk's preload (sandboxed; bundled to one CommonJS file by
 * electron/vite.preload.config.ts): exposes the contract's named functions
 * on `window.linesign` through contextBridge. ipcRenderer itself never
 * reaches the page.
 */
import { contextBridge, ipcRenderer } from "electron";
import { buildApi } from "./preload-api.js";

contextBridge.exposeInMainWorld(
  "linesign",
  buildApi((channel, args) => ipcRenderer.invoke(channel, args)),
);
