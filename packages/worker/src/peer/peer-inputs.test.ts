import { createHash } from "node:crypto";
import { type AddressInfo, createServer } from "node:net";
import { create } from "@bufbuild/protobuf";
import { type MatMulTask, PeerSourceSchema } from "@dce/proto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createBlobCache } from "../inputs/blob-cache.js";
import { rowPanelKey } from "../inputs/panel-key.js";
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

// A worker whose leases name a peer for their A row panels: it reads them from the peer
// when the peer serves the right bytes, and from the coordinator otherwise; the result
// is the same to the bit either way.

const [m, k, n, band] = [400, 30, 40, 100];
const a = randomMatrix(m, k, 13);
const b = randomMatrix(k, n, 14);
const panelOf = (r0: number) => a.slice(r0 * k, (r0 + band) * k);
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

/** Runs the job on one worker (worker-2) whose leases name `address` as the holder of their A panel. */
async function runJob(address: string, fill: (blobId: string) => Promise<void>, extra: { rpcTimeoutMs?: number } = {}) {
  const h = await startCoordinator();
  const aRef = h.putMatrix(m, k, a);
  const bRef = h.putMatrix(k, n, b);
  await fill(aRef.blobId); // the peer holds A's panels before the job starts
  const job = await h.submit(aRef, bRef, band, 10); // 4 row bands x 4 column tiles
  h.faults.rewriteReply("acquireShards", (reply) => {
    for (const lease of reply.leases as { matmul?: MatMulTask }[]) {
      const t = lease.matmul;
      if (t === undefined) continue;
      t.aPeers = [create(PeerSourceSchema, { workerId: "w1", address, identity: "worker-1" })];
      t.aPanelSha256 = sha(panelOf(t.rowStart));
    }
  });
  // A (96 000 bytes) is over a quarter of the cache, so it is fetched by row panels.
  const worker = newWorker(h, { pool: new HeldPool(2), cacheBytes: 300_000, ...certs.worker2, peerTimeoutMs: 500, ...extra });
  const started = performance.now();
  await worker.start();
  await waitFor("all tiles", () => h.doneCount(job.jobId) === job.shards, 15_000);
  const elapsedMs = performance.now() - started;
  expect(bits(await h.result(job.jobId))).toEqual(bits(product(m, n, k, a, b)));
  return { fromCoordinator: bytesRead(h, aRef), inputBytes: worker.inputBytes, elapsedMs };
}

/** A peer (worker-1) that will hold every row panel of A, each changed by `corrupt`. */
async function holdPanels(corrupt: (panel: Float64Array) => void = () => {}) {
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
  const fill = async (blobId: string) => {
    for (let r0 = 0; r0 < m; r0 += band) {
      const panel = panelOf(r0);
      corrupt(panel);
      await cache.getOrLoad(rowPanelKey(blobId, r0, r0 + band), async () => panel, new AbortController().signal);
    }
  };
  return { server, address: `127.0.0.1:${server.port}`, fill };
}

describe("a worker reading A's row panels from a peer", () => {
  it("takes every panel from the peer, none from the coordinator", async () => {
    const peer = await holdPanels();
    const { fromCoordinator, inputBytes } = await runJob(peer.address, peer.fill);
    expect(fromCoordinator).toBe(0);
    expect(inputBytes.peer).toBe(m * k * 8);
    expect(peer.server.servedBytes).toBe(m * k * 8);
  });

  it("falls back to the coordinator when the peer serves wrong bytes, and the result stays the same", async () => {
    const peer = await holdPanels((panel) => {
      panel[17] = (panel[17] ?? 0) * (1 + 2 ** -40);
    });
    const { fromCoordinator, inputBytes } = await runJob(peer.address, peer.fill);
    expect(peer.server.servedBytes).toBe(m * k * 8);
    expect(fromCoordinator).toBe(m * k * 8);
    expect(inputBytes.peer).toBe(0);
  });

  it("falls back to the coordinator within the reach bound when the peer does not answer", async () => {
    const peer = await holdPanels();
    // A host that accepts connections and never answers (a stopped process, a black hole).
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    try {
      const address = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
      // Calls may wait 20 s; the 500 ms reach bound is what lets the 4 panels fall back quickly.
      const { fromCoordinator, elapsedMs } = await runJob(address, peer.fill, { rpcTimeoutMs: 20_000 });
      expect(fromCoordinator).toBe(m * k * 8);
      expect(elapsedMs).toBeLessThan(10_000);
    } finally {
      silent.close();
    }
  });
});
