/**
 * Real file systems for tests (needs root, as CI has): a tmpfs stands for a
 * small or full disk, or for a removable medium that can be taken out
 * (unmounted, its empty mount point left behind) and put back.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Mounts a tmpfs of `size` (e.g. "4m") on `dir`. @throws Error when mount fails */
export function mountTmpfs(dir: string, size: string, mode = "0755"): void {
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size},mode=${mode}`, "tmpfs", dir], {
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`cannot mount a tmpfs on ${dir} (run as root): ${r.stderr}`);
}

/** A new folder with a tmpfs of `size` mounted on it. */
export function newTmpfs(size: string, prefix = "linesign-tmpfs-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  mountTmpfs(dir, size);
  return dir;
}

/** Unmounts `dir` (lazily, so a file still open does not stop it); its mount point stays. */
export function unmount(dir: string): void {
  spawnSync("umount", ["-l", dir]);
}
