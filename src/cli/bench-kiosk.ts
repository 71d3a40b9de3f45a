/**
 * The kiosk part of `linesign bench`: how fast the station service answers
 * calls over its two transports (the Unix socket Electron uses, loopback HTTP
 * with the secret a browser uses), and how soon a watching tile hears of a
 * step on the line, against one device's time on the wire.
 */
import { request } from "node:http";
import { join } from "node:path";
import type { Station } from "../compose.js";
import { StationService } from "../service/station-service.js";
import { listenLoopback, listenUnix, LOGIN_HEADER } from "../service/http.js";

export interface KioskBenchResult {
  calls: number;
  /** Sequential auth.whoami calls per second. */
  socketCallsPerSec: number;
  loopbackCallsPerSec: number;
  /** Median and 99th percentile from a line step to the watcher's answer, ms. */
  watchLagMsMedian: number;
  watchLagMsP99: number;
  /** The median lag against one device's wire time (lower is better). */
  lagOfWireTime: number;
}

type Target = { socketPath: string } | { host: string; port: number; secret: string };

function call(
  t: Target,
  login: string | null,
  channel: string,
  args: unknown,
): Promise<{ body: string; login?: string }> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ channel, args });
    const req = request(
      {
        ...("socketPath" in t ? { socketPath: t.socketPath } : { host: t.host, port: t.port }),
        path: "/api/call",
        method: "POST",
        agent: false,
        headers: {
          "content-type": "application/json",
          ...("secret" in t ? { authorization: `Bearer ${t.secret}` } : {}),
          ...(login ? { [LOGIN_HEADER]: login } : {}),
        },
      },
      (res) => {
        let b = "";
        res.setEncoding("utf8").on("data", (d: string) => (b += d));
        res.on("end", () => resolve({ body: b, login: res.headers[LOGIN_HEADER] as string }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

export async function benchKiosk(
  s: Station,
  calls: number,
  wireMsPerDevice: number,
  log: (t: string) => void,
): Promise<KioskBenchResult> {
  const who = { name: "bench-officer", passphrase: "bench-officer-passphrase" };
  if (!s.ctx.store.getUser(who.name)) await s.users.add(who.name, "officer", who.passphrase);
  const service = new StationService(s, { ports: ["/dev/null"] });
  const socketPath = join(s.home.dir, "run", "bench.sock");
  const unix = await listenUnix(service, socketPath);
  const lb = await listenLoopback(service, { port: 0, uiDir: null });
  try {
    const rate = async (t: Target): Promise<number> => {
      const login = (await call(t, null, "auth.login", who)).login!;
      const t0 = performance.now();
      for (let i = 0; i < calls; i++) await call(t, login, "auth.whoami", {});
      return Math.round((calls * 1000) / (performance.now() - t0));
    };
    const socketCallsPerSec = await rate({ socketPath });
    const loopbackCallsPerSec = await rate({ host: "127.0.0.1", port: lb.port, secret: lb.secret });
    log(
      `bench: kiosk calls ${socketCallsPerSec}/s over the socket, ${loopbackCallsPerSec}/s over loopback`,
    );
    // A watcher waits; a step lands on the board; how long until the watcher has its answer.
    const login = (await call({ socketPath }, null, "auth.login", who)).login!;
    const lags: number[] = [];
    for (let i = 0; i < 200; i++) {
      const after = service.board.version;
      const answered = call({ socketPath }, login, "line.watch", { after, waitMs: 5000 });
      await new Promise((r) => setImmediate(r));
      const t0 = performance.now();
      service.board.apply({ event: "port.open", port: "/dev/null" });
      await answered;
      lags.push(performance.now() - t0);
    }
    lags.sort((a, b) => a - b);
    const median = lags[Math.floor(lags.length / 2)]!;
    const p99 = lags[Math.floor(lags.length * 0.99)]!;
    return {
      calls,
      socketCallsPerSec,
      loopbackCallsPerSec,
      watchLagMsMedian: Number(median.toFixed(2)),
      watchLagMsP99: Number(p99.toFixed(2)),
      lagOfWireTime: Number((median / wireMsPerDevice).toFixed(4)),
    };
  } finally {
    await service.close();
    await lb.close();
    await unix.close();
  }
}
