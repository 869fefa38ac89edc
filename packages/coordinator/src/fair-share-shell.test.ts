import { Code, ConnectError, createClient, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import { ErrorReason, JobService, WorkerService } from "@dce/proto";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { ALL_ROLES } from "./access.js";
import { principalKey } from "./auth.js";
import { Coordinator } from "./coordinator.js";
import { errorInfosOf } from "./errors.js";
import { resolveConfig } from "./server.js";
import { submitInline } from "./test-support/inline-jobs.js";
import { createMemoryStorage, VirtualClock } from "./testing.js";

// The shell's part of fair share: the token's weight (as the auth layer read it) and the
// request's priority reach the core with each submit; a bad priority is INVALID_ARGUMENT.

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

/** Acts as the principal named by the `x-test-client` header ("name:weight"), as the auth layer would set it. */
const asTestClient: Interceptor = (next) => async (req) => {
  const [name = "anonymous", weight = "1"] = (req.header.get("x-test-client") ?? "anonymous:1").split(":");
  req.contextValues.set(principalKey, { roles: new Set(ALL_ROLES), clientId: name, clientWeight: Number(weight) });
  return await next(req);
};

async function start() {
  const config = resolveConfig({ dataDir: "unused", leaseTtlMs: 60_000, localStore: false, verify: false });
  let ids = 0;
  const coordinator = await Coordinator.open(config, pino({ level: "silent" }), {
    storage: createMemoryStorage(),
    clock: new VirtualClock(1_000_000),
    random: () => 0.5,
    newId: () => `00000000-0000-4000-8000-${String(++ids).padStart(12, "0")}`,
  });
  closers.push(() => coordinator.close());
  const transport = createRouterTransport((r) => coordinator.routes(r), { router: { interceptors: [asTestClient] } });
  // Each client's calls carry its name and weight in the test header.
  const jobsAs = (client: string) =>
    createClient(
      JobService,
      createRouterTransport((r) => coordinator.routes(r), {
        router: { interceptors: [asTestClient] },
        transport: {
          interceptors: [
            (next) => (req) => {
              req.header.set("x-test-client", client);
              return next(req);
            },
          ],
        },
      }),
    );
  return { coordinator, jobsAs, workers: createClient(WorkerService, transport) };
}

describe("weights and priorities through the job service", () => {
  it("grants the workers 1:3 to clients whose tokens weigh 1 and 3", async () => {
    const s = await start();
    const light = await submitInline(s.jobsAs("light:1"), { m: 64, k: 8, n: 64, tile: 8 });
    const heavy = await submitInline(s.jobsAs("heavy:3"), { m: 64, k: 8, n: 64, tile: 8 });
    const { workerId } = await s.workers.registerWorker({
      name: "w",
      kernels: [{ name: "reference", fingerprint: "test/1" }],
      threads: 1,
    });
    const got = new Map<string, number>();
    for (let i = 0; i < 40; i++) {
      const { leases } = await s.workers.acquireShards({ workerId, maxShards: 1, waitMs: 0 });
      for (const l of leases) got.set(l.lease?.jobId ?? "", (got.get(l.lease?.jobId ?? "") ?? 0) + 1);
    }
    expect([got.get(light.jobId), got.get(heavy.jobId)]).toEqual([10, 30]);
  });

  it("reports the priority in the job's status, and refuses one outside -100..100 with INVALID_ARGUMENT", async () => {
    const s = await start();
    const jobs = s.jobsAs("alice:1");
    const a = { rows: 1, cols: 1, inlineData: new Uint8Array(8) };
    const ok = await jobs.submitJob({ matmul: { a, b: a, tileRows: 1, tileCols: 1, kernel: "reference" }, priority: 100 });
    expect(ok.status?.priority).toBe(100);
    for (const priority of [101, -101]) {
      // A blob that does not exist too: the priority is named first.
      const missing = { rows: 1, cols: 1, blobId: "f".repeat(64) };
      const e = await jobs
        .submitJob({ matmul: { a: missing, b: missing, tileRows: 1, tileCols: 1, kernel: "reference" }, priority })
        .then(
          () => undefined,
          (x: unknown) => ConnectError.from(x),
        );
      expect(e?.code).toBe(Code.InvalidArgument);
      expect(e?.rawMessage).toBe(`priority must be an integer from -100 to 100, got ${priority}`);
      expect(e && errorInfosOf(e)[0]?.reason).toBe(ErrorReason.INVALID_SPEC);
      expect(e && errorInfosOf(e)[0]?.metadata["field"]).toBe("priority");
    }
  });
});
