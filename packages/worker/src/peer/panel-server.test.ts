import { createHash } from "node:crypto";
import { connect, createServer, type Socket } from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { PanelAxis, PeerService, type PeerSource } from "@dce/proto";
import { errorReasonOf } from "@dce/runtime/error-info";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createBlobCache } from "../inputs/blob-cache.js";
import { colPanelKey, rowPanelKey } from "../inputs/panel-key.js";
import { silentLogger, type WorkerLogger } from "../log-scope.js";
import { issuePeerCerts, type PeerCerts, type TlsRole } from "../test-support/peer-certs.js";
import { captureLogger, randomMatrix } from "../test-support/worker-fixtures.js";
import { type PanelServer, startPanelServer } from "./panel-server.js";
import { type PanelRequest, PeerReader } from "./peer-reader.js";

// The panel server and the peer reader over real mutual TLS on loopback.

const blobId = "ab".repeat(32);
const [rows, cols] = [12, 10];
const matrix = randomMatrix(rows, cols, 7);
const bytesOf = (x: Float64Array) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest();
const rowPanel = matrix.slice(3 * cols, 7 * cols);
const rowRequest: PanelRequest = { blobId, rows, cols, axis: PanelAxis.ROWS, start: 3, end: 7, totalBytes: rowPanel.byteLength };

let certs: PeerCerts;
beforeAll(async () => {
  certs = await issuePeerCerts();
});
afterAll(async () => {
  await certs?.remove();
});

const servers: PanelServer[] = [];
const readers: PeerReader[] = [];
afterEach(async () => {
  for (const r of readers.splice(0)) r.close();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function serve(cache = createBlobCache({ budgetBytes: 1 << 20 }), extra: { maxConcurrentReads?: number } = {}) {
  const server = await startPanelServer({
    host: "127.0.0.1",
    port: 0,
    ...certs.worker1,
    cache,
    maxMessageBytes: 65_536 + 200, // 200-byte pages: a panel takes several calls
    log: silentLogger,
    ...extra,
  });
  servers.push(server);
  const peer: PeerSource = {
    $typeName: "dce.v1.PeerSource",
    workerId: "w1",
    address: `127.0.0.1:${server.port}`,
    identity: "worker-1",
  };
  return { server, cache, peer };
}

function reader(role: TlsRole = certs.worker2, log: WorkerLogger = silentLogger, reachTimeoutMs = 2_000): PeerReader {
  const r = new PeerReader({ ...role, maxMessageBytes: 65_536 + 200, reachTimeoutMs, callTimeoutMs: 10_000, log });
  readers.push(r);
  return r;
}

/** A raw PeerService client with `role`'s certificate (or none), checking nothing of the server's name. */
function rawClient(port: number, role: Partial<TlsRole>) {
  const transport = createGrpcTransport({
    baseUrl: `https://127.0.0.1:${port}`,
    nodeOptions: { ...role, ca: certs.worker1.ca, checkServerIdentity: () => undefined },
  });
  return createClient(PeerService, transport);
}

const load = (cache: ReturnType<typeof createBlobCache>, key: string, value: Float64Array) =>
  cache.getOrLoad(key, async () => value, new AbortController().signal);

describe("panel server", () => {
  it("serves a cached row panel to a worker of the cluster, page by page, with the lease's hash", async () => {
    const { cache, peer, server } = await serve();
    await load(cache, rowPanelKey(blobId, 3, 7), rowPanel);
    const r = reader();
    const got = await r.read(rowRequest, [peer], sha(bytesOf(rowPanel)), new AbortController().signal);
    expect(got).toEqual(bytesOf(rowPanel));
    expect(r.bytesRead).toBe(rowPanel.byteLength);
    expect(server.servedBytes).toBe(rowPanel.byteLength);
  });

  it("serves a column panel gathered from a whole matrix it holds", async () => {
    const { cache, peer } = await serve();
    await load(cache, blobId, matrix);
    const panel = new Float64Array(rows * 3);
    for (let i = 0; i < rows; i++) panel.set(matrix.subarray(i * cols + 4, i * cols + 7), i * 3);
    const request = { blobId, rows, cols, axis: PanelAxis.COLS, start: 4, end: 7, totalBytes: panel.byteLength };
    const got = await reader().read(request, [peer], sha(bytesOf(panel)), new AbortController().signal);
    expect(got).toEqual(bytesOf(panel));
  });

  it("answers NOT_FOUND at once for a panel it neither holds nor loads, and never fetches it", async () => {
    const { cache, server } = await serve();
    await load(cache, colPanelKey(blobId, 3, 7), rowPanel); // the same range on the other axis is another panel
    const client = rawClient(server.port, certs.worker2);
    const err = await client.readPanel({ blobId, rows, cols, axis: PanelAxis.ROWS, start: 3, end: 7 }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.NotFound);
    expect(errorReasonOf(err)).toBeDefined();
    expect(cache.get(rowPanelKey(blobId, 3, 7))).toBeUndefined();
  });

  it("joins a load under way, and refuses reads beyond its limit with RESOURCE_EXHAUSTED", async () => {
    const { cache, server } = await serve(undefined, { maxConcurrentReads: 1 });
    let finish!: (v: Float64Array) => void;
    const loading = cache.getOrLoad(
      rowPanelKey(blobId, 3, 7),
      () => new Promise((resolve) => (finish = resolve)),
      new AbortController().signal,
    );
    const client = rawClient(server.port, certs.worker2);
    const first = client.readPanel({ blobId, rows, cols, axis: PanelAxis.ROWS, start: 3, end: 7, maxBytes: 1_000 });
    await new Promise((r) => setTimeout(r, 100));
    const second = await client
      .readPanel({ blobId, rows, cols, axis: PanelAxis.ROWS, start: 3, end: 7 }, { timeoutMs: 2_000 })
      .then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
    expect(second?.code).toBe(Code.ResourceExhausted);
    finish(rowPanel);
    await loading;
    const res = await first;
    // A page is capped by the server's message limit (here 200 bytes), whatever max_bytes asks.
    expect(res.data).toEqual(bytesOf(rowPanel).subarray(0, 200));
    expect(res.totalBytes).toBe(BigInt(rowPanel.byteLength));
  });

  it("answers a malformed request with INVALID_ARGUMENT", async () => {
    const { server } = await serve();
    const client = rawClient(server.port, certs.worker2);
    const err = await client.readPanel({ blobId, rows, cols, axis: PanelAxis.ROWS, start: 7, end: 3 }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toMatch(/does not fit rows/);
  });

  it("refuses a client without a certificate, one from another CA, and a non-worker of the cluster", async () => {
    const { cache, server } = await serve();
    await load(cache, rowPanelKey(blobId, 3, 7), rowPanel);
    const ask = (role: Partial<TlsRole>) =>
      rawClient(server.port, role)
        .readPanel({ blobId, rows, cols, axis: PanelAxis.ROWS, start: 3, end: 7 }, { timeoutMs: 5_000 })
        .then(
          () => undefined,
          (e: unknown) => ConnectError.from(e),
        );
    const none = await ask({});
    const stranger = await ask({ cert: certs.stranger.cert, key: certs.stranger.key });
    const client = await ask(certs.client);
    expect(none).toBeDefined();
    expect(stranger).toBeDefined();
    expect(client?.code).toBe(Code.PermissionDenied);
    expect(server.servedBytes).toBe(0);
  });
});

describe("peer reader", () => {
  it("does not use a peer whose certificate is not the identity the coordinator named", async () => {
    const { cache, peer, server } = await serve();
    await load(cache, rowPanelKey(blobId, 3, 7), rowPanel);
    const log = captureLogger();
    const got = await reader(certs.worker2, log).read(
      rowRequest,
      [{ ...peer, identity: "worker-2" }],
      sha(bytesOf(rowPanel)),
      new AbortController().signal,
    );
    expect(got).toBeUndefined();
    expect(server.servedBytes).toBe(0);
    expect(log.lines.find((l) => l.level === "warn")?.fields.err).toMatch(/not the worker "worker-2"/);
  });

  it("skips a peer whose bytes do not hash to the lease's SHA-256, for the next one", async () => {
    const bad = await serve();
    const good = await serve();
    const wrong = rowPanel.slice();
    wrong[5] = (wrong[5] ?? 0) + 1;
    await load(bad.cache, rowPanelKey(blobId, 3, 7), wrong);
    await load(good.cache, rowPanelKey(blobId, 3, 7), rowPanel);
    const log = captureLogger();
    const r = reader(certs.worker2, log);
    const got = await r.read(
      rowRequest,
      [bad.peer, { ...good.peer, workerId: "w2" }],
      sha(bytesOf(rowPanel)),
      new AbortController().signal,
    );
    expect(got).toEqual(bytesOf(rowPanel));
    expect(bad.server.servedBytes).toBe(rowPanel.byteLength);
    expect(log.lines.filter((l) => l.level === "warn").map((l) => l.msg)).toEqual([
      "a peer served a panel whose SHA-256 is not the lease's; skipping it",
    ]);
    // Once per peer at warn; the same peer failing again is logged at debug.
    expect(await r.read(rowRequest, [bad.peer], sha(bytesOf(rowPanel)), new AbortController().signal)).toBeUndefined();
    expect(log.lines.filter((l) => l.level === "warn")).toHaveLength(1);
  });

  it("gives up on a peer that is down, or one that does not answer, within the call deadline", async () => {
    const closed = await serve();
    await closed.server.close();
    // A listener that accepts and never answers a TLS handshake.
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const port = (silent.address() as { port: number }).port;
    try {
      const started = performance.now();
      const got = await reader(certs.worker2, silentLogger, 300).read(
        rowRequest,
        [closed.peer, { ...closed.peer, workerId: "w9", address: `127.0.0.1:${port}` }],
        sha(bytesOf(rowPanel)),
        new AbortController().signal,
      );
      expect(got).toBeUndefined();
      expect(performance.now() - started).toBeLessThan(1_500);
    } finally {
      silent.close();
    }
  });

  it("waits past the reach bound for a peer still loading the panel, and takes it from there", async () => {
    const { cache, peer } = await serve();
    let finish!: (v: Float64Array) => void;
    const loading = cache.getOrLoad(
      rowPanelKey(blobId, 3, 7),
      () => new Promise((resolve) => (finish = resolve)),
      new AbortController().signal,
    );
    setTimeout(() => finish(rowPanel), 800);
    const got = await reader(certs.worker2, silentLogger, 300).read(
      rowRequest,
      [peer],
      sha(bytesOf(rowPanel)),
      new AbortController().signal,
    );
    await loading;
    expect(got).toEqual(bytesOf(rowPanel));
  });

  it("gives up within about the reach bound on a peer that goes silent in the middle of a call", async () => {
    const { cache, server, peer } = await serve();
    void cache.getOrLoad(rowPanelKey(blobId, 3, 7), () => new Promise(() => {}), new AbortController().signal); // loads forever
    // A proxy that forwards until told to drop everything, as a cut cable or a stopped process.
    let cut = false;
    const sockets: Socket[] = [];
    const proxy = createServer((down) => {
      const up = connect(server.port, "127.0.0.1");
      sockets.push(down, up);
      for (const [from, to] of [
        [down, up],
        [up, down],
      ] as const) {
        from.on("data", (d) => {
          if (!cut) to.write(d);
        });
        from.on("error", () => {});
      }
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    try {
      const address = `127.0.0.1:${(proxy.address() as { port: number }).port}`;
      setTimeout(() => {
        cut = true;
      }, 500);
      const started = performance.now();
      const got = await reader(certs.worker2, silentLogger, 300).read(
        rowRequest,
        [{ ...peer, address }],
        sha(bytesOf(rowPanel)),
        new AbortController().signal,
      );
      expect(got).toBeUndefined();
      // The call's own deadline is 10 s: the PINGs ended it.
      expect(performance.now() - started).toBeLessThan(2_500);
    } finally {
      for (const socket of sockets) socket.destroy();
      proxy.close();
    }
  });
});
