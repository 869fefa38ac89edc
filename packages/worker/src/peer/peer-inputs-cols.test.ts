import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { type MatMulTask, PeerSourceSchema } from "@dce/proto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createBlobCache } from "../inputs/blob-cache.js";
import { colPanelKey } from "../inputs/panel-key.js";
import { silentLogger } from "../log-scope.js";
import { issuePeerCerts, type PeerCerts } from "../test-support/peer-certs.js";
import {
  bits,
  bytesRead,
  cleanUpWorkers,
  HeldPool,
  newWorker,
  product,
  randomMatrix,
  startCoordinator,
  waitFor,
} from "../test-support/worker-fixtures.js";
import { type PanelServer, startPanelServer } from "./panel-server.js";

// B's column panels from a peer: the same rules as A's row panels (peer-inputs.test.ts).

const [m, k, n, band] = [40, 30, 400, 100];
const a = randomMatrix(m, k, 23);
const b = randomMatrix(k, n, 24);
/** Columns [c0, c0 + band) of B, contiguous k × band. */
function panelOf(c0: number): Float64Array {
  const out = new Float64Array(k * band);
  for (let i = 0; i < k; i++) out.set(b.subarray(i * n + c0, i * n + c0 + band), i * band);
  return out;
}
const sha = (x: Float64Array) =>
  createHash("sha256")
    .update(new Uint8Array(x.buffer, x.byteOffset, x.byteLength))
    .digest();

let certs: PeerCerts;
beforeAll(async () => {
  certs = await issuePeerCerts();
});
afterAll(async () => {
  await certs?.remove();
});
const servers: PanelServer[] = [];
afterEach(async () => {
  await cleanUpWorkers();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function run(corrupt: (panel: Float64Array) => void) {
  const cache = createBlobCache({ budgetBytes: 1 << 20 });
  const server = await startPanelServer({
    host: "127.0.0.1",
    port: 0,
    ...certs.worker1,
    cache,
    maxMessageBytes: 1 << 20,
    log: silentLogger,
  });
  servers.push(server);
  const h = await startCoordinator();
  const aRef = h.putMatrix(m, k, a);
  const bRef = h.putMatrix(k, n, b);
  for (let c0 = 0; c0 < n; c0 += band) {
    const panel = panelOf(c0);
    corrupt(panel);
    await cache.getOrLoad(colPanelKey(bRef.blobId, c0, c0 + band), async () => panel, new AbortController().signal);
  }
  const job = await h.submit(aRef, bRef, m, band); // 1 row band x 4 column bands
  h.faults.rewriteReply("acquireShards", (reply) => {
    for (const lease of reply.leases as { matmul?: MatMulTask }[]) {
      const t = lease.matmul;
      if (t === undefined) continue;
      t.bPeers = [create(PeerSourceSchema, { workerId: "w1", address: `127.0.0.1:${server.port}`, identity: "worker-1" })];
      t.bPanelSha256 = sha(panelOf(t.colStart));
    }
  });
  // B (96 000 bytes) is over a quarter of the cache, so it is fetched by column panels.
  const worker = newWorker(h, { pool: new HeldPool(2), cacheBytes: 300_000, ...certs.worker2, peerTimeoutMs: 500 });
  await worker.start();
  await waitFor("all tiles", () => h.doneCount(job.jobId) === job.shards);
  expect(bits(await h.result(job.jobId))).toEqual(bits(product(m, n, k, a, b)));
  return { fromCoordinator: bytesRead(h, bRef), inputBytes: worker.inputBytes };
}

describe("a worker reading B's column panels from a peer", () => {
  it("takes every panel from the peer, none from the coordinator", async () => {
    const { fromCoordinator, inputBytes } = await run(() => {});
    expect(fromCoordinator).toBe(0);
    expect(inputBytes.peer).toBe(k * n * 8);
  });

  it("falls back to the coordinator when the peer serves wrong bytes, and the result stays the same", async () => {
    const { fromCoordinator, inputBytes } = await run((panel) => {
      panel[3] = -(panel[3] ?? 0);
    });
    expect(fromCoordinator).toBe(k * n * 8);
    expect(inputBytes.peer).toBe(0);
  });
});
