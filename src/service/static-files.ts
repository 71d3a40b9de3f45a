/**
 * Which file of the kiosk page a request may read: only files inside the
 * page's folder (a path climbing out is folded back inside it), and only the
 * kinds the page is made of. Shared by the service's loopback server and
 * Electron's app:// protocol.
 */
import { extname, join, normalize, sep } from "node:path";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".woff2": "font/woff2",
};

/** The file for a URL path ("/" is index.html) and its content type, or null. */
export function resolveStaticFile(
  dir: string,
  urlPath: string,
): { path: string; type: string } | null {
  let rel: string;
  try {
    rel = decodeURIComponent(urlPath === "/" || urlPath === "" ? "/index.html" : urlPath);
  } catch {
    return null;
  }
  const path = join(dir, normalize(rel).replace(/^([/\\])+/, ""));
  const type = TYPES[extname(path)];
  if (!path.startsWith(dir + sep) || !type) return null;
  return { path, type };
}
