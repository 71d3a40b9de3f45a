/**
 * Input files are read with a bound: an endless input (/dev/zero) or a huge
 * file is refused after its limit, naming the file, instead of being read
 * into memory without end.
 */
import { truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { devStation, type TestStation } from "../helpers/station.js";

describe("hostile input files", () => {
  let st: TestStation;
  beforeAll(() => {
    st = devStation();
  });

  it("an endless CSR (/dev/zero) is refused after 64 KiB", () => {
    const r = st.run(["issue", "--csr", "/dev/zero", "--json"]);
    expect(r.code).toBe(1);
    expect(r.json.error).toMatchObject({ code: "FILE_READ_FAILED" });
    expect(r.json.error!.message).toContain("/dev/zero is larger than 64 KiB");
  });

  it("a huge certificate or device list is refused before it is read", () => {
    const big = join(st.hsm.dir, "huge.pem");
    writeFileSync(big, "");
    truncateSync(big, 8 * 1024 * 1024 * 1024); // 8 GiB, sparse
    const r = st.run(["ca", "import", "--label", "x", "--cert", big, "--json"]);
    expect(r.code).toBe(1);
    expect(r.json.error!.message).toContain(`${big} is larger than 1 MiB`);
    const w = st.run([
      "work-order",
      "create",
      "--profile",
      "default",
      "--quantity",
      "1",
      "--devices",
      big,
      "--json",
    ]);
    expect(w.code).toBe(1);
    expect(w.json.error!.message).toContain("is larger than 16 MiB");
  });

  it("a station.json grown past 1 MiB is refused, naming it", () => {
    const path = join(st.home, "station.json");
    const r0 = st.run(["status", "--json"]);
    expect(r0.code, r0.stdout).toBe(0);
    writeFileSync(path, " ".repeat(2 * 1024 * 1024), { flag: "a" });
    const r = st.run(["status", "--json"]);
    expect(r.code).toBe(1);
    expect(r.json.error!.message).toContain(`${path} is larger than 1 MiB`);
  });
});
