/**
 * Slow and idle clients cannot exhaust a real coordinator process: hundreds of idle
 * connections and slowloris connections (one byte a second, at every stage: TLS
 * handshake, HTTP/2 preface, HTTP/1.1 headers, a unary request body) are closed by the
 * coordinator's own timeouts, connections over --max-connections are refused, and
 * meanwhile other clients are served promptly and memory stays bounded.
 * Loopback only; every wait is bounded.
 */
import { readFileSync } from "node:fs";
import * as http2 from "node:http2";
import * as net from "node:net";
import * as tls from "node:tls";
import { createClient } from "@dce/client-sdk";
import { JobService } from "@dce/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Cluster, naiveMultiply, randomMatrix, sameBytes, startCluster } from "../support/cluster.js";

const HANDSHAKE_MS = 1_500;
const IDLE_MS = 2_500;
const REQUEST_MS = 3_000;
const MAX_CONNECTIONS = 400;
const KEEPALIVE_INTERVAL_MS = 1_000;
const KEEPALIVE_TIMEOUT_MS = 1_500;
/** Scheduling slack on a loaded machine, on top of each timeout. */
const SLACK_MS = 4_000;

function vmRssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : 0;
}

/** A socket and when the coordinator closed it (ms after `openedAt`), once it has. */
interface Tracked {
  readonly socket: net.Socket;
  readonly openedAt: number;
  closedAfterMs?: number;
}

function track(socket: net.Socket): Tracked {
  const t: Tracked = { socket, openedAt: performance.now() };
  socket.on("error", () => {});
  // Read (and drop) whatever comes, so the coordinator's FIN is seen: a paused socket never learns it closed.
  socket.resume();
  socket.on("close", () => {
    t.closedAfterMs = performance.now() - t.openedAt;
  });
  return t;
}

/** Waits until every socket is closed or `timeoutMs` passes; returns how many are still open. */
async function waitClosed(list: readonly Tracked[], timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline && list.some((t) => t.closedAfterMs === undefined)) {
    await new Promise((r) => setTimeout(r, 50));
  }
  return list.filter((t) => t.closedAfterMs === undefined).length;
}

/** Sends `bytes` one per second until the socket closes; returns a stop function. */
function trickle(socket: net.Socket | tls.TLSSocket | http2.ClientHttp2Stream, bytes: Uint8Array): () => void {
  let i = 0;
  const timer = setInterval(() => {
    if (i >= bytes.length || socket.destroyed) {
      clearInterval(timer);
      return;
    }
    socket.write(bytes.subarray(i, i + 1));
    i++;
  }, 1_000);
  return () => clearInterval(timer);
}

const maxOf = (xs: readonly number[]) => xs.reduce((m, x) => Math.max(m, x), 0);

describe("slow and idle clients", () => {
  let cluster: Cluster;
  let host: string;
  let port: number;
  let pid: number;
  const stops: (() => void)[] = [];
  const opened: net.Socket[] = [];

  beforeAll(async () => {
    cluster = await startCluster({
      workers: 1,
      extraCoordinatorArgs: [
        "--handshake-timeout-ms",
        String(HANDSHAKE_MS),
        "--idle-timeout-ms",
        String(IDLE_MS),
        "--request-timeout-ms",
        String(REQUEST_MS),
        "--max-connections",
        String(MAX_CONNECTIONS),
        "--keepalive-interval-ms",
        String(KEEPALIVE_INTERVAL_MS),
        "--keepalive-timeout-ms",
        String(KEEPALIVE_TIMEOUT_MS),
        "--log-level",
        "warn",
      ],
    });
    const u = new URL(cluster.url);
    host = u.hostname;
    port = Number(u.port);
    pid = cluster.coordinator.child.pid as number;
  }, 60_000);

  afterAll(async () => {
    for (const stop of stops) stop();
    for (const s of opened) s.destroy();
    await cluster?.close();
  });

  const tlsOptions = (alpn: string[]): tls.ConnectionOptions => ({
    host,
    port,
    ca: cluster.client.ca,
    ...(cluster.client.cert && cluster.client.key ? { cert: cluster.client.cert, key: cluster.client.key } : {}),
    ALPNProtocols: alpn,
  });

  /** Latencies (ms) of `n` GetJob calls from a well-behaved client, one after another. */
  async function probe(n: number): Promise<number[]> {
    const jobs = cluster.raw(JobService);
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await jobs.getJob({ jobId: "probe" }).catch(() => undefined); // NOT_FOUND is an answer
      out.push(performance.now() - t0);
    }
    return out;
  }

  it("hundreds of idle connections: others are served promptly, idle ones closed after the timeouts, memory bounded", async () => {
    const rssBefore = vmRssKb(pid);
    const baseline = await probe(10);
    // 200 TLS connections that negotiate HTTP/2 and then say nothing, 50 that negotiate HTTP/1.1
    // and say nothing, and 100 TCP connections that never start the TLS handshake.
    const idle: Tracked[] = [];
    const handshaken = await Promise.all(
      Array.from(
        { length: 250 },
        (_, i) =>
          new Promise<tls.TLSSocket>((resolve, reject) => {
            const s = tls.connect(tlsOptions(i < 200 ? ["h2"] : ["http/1.1"]), () => resolve(s));
            s.once("error", reject);
          }),
      ),
    );
    for (const s of handshaken) {
      opened.push(s);
      idle.push(track(s));
    }
    const raw: Tracked[] = [];
    for (let i = 0; i < 100; i++) {
      const s = net.connect(port, host);
      opened.push(s);
      raw.push(track(s));
    }
    const rssDuring = vmRssKb(pid);
    const during = await probe(20);
    // A whole job still runs while the connections are open.
    const sdk = createClient({ baseUrl: cluster.url, transport: cluster.transport() });
    const a = randomMatrix(30, 20, 3);
    const b = randomMatrix(20, 10, 4);
    const c = await (await sdk.submitMatMul(a, b, { kernel: "reference" })).result({ timeoutMs: 30_000 });
    expect(sameBytes(c.data, naiveMultiply(a, b))).toBe(true);

    expect(await waitClosed(raw, HANDSHAKE_MS + SLACK_MS)).toBe(0);
    expect(await waitClosed(idle, Math.max(HANDSHAKE_MS, IDLE_MS) + SLACK_MS)).toBe(0);
    const rssAfter = vmRssKb(pid);
    console.log(
      `idle connections: 350 (200 h2, 50 http/1.1, 100 no TLS); GetJob latency ms: before max ${maxOf(baseline).toFixed(0)}, ` +
        `during max ${maxOf(during).toFixed(0)}; closed after ms: no-TLS max ${maxOf(raw.map((t) => t.closedAfterMs ?? 0)).toFixed(0)}, ` +
        `TLS max ${maxOf(idle.map((t) => t.closedAfterMs ?? 0)).toFixed(0)}; VmRSS kB before ${rssBefore}, with the connections ${rssDuring}, after ${rssAfter}`,
    );
    // Closed by the timeouts, not sooner.
    for (const t of raw) expect(t.closedAfterMs).toBeGreaterThanOrEqual(HANDSHAKE_MS - 100);
    expect(maxOf(during)).toBeLessThan(2_000);
    expect(rssDuring - rssBefore).toBeLessThan(100 * 1024);
  });

  it("connections over --max-connections are refused at once, and accepted again once idle ones are closed", async () => {
    const all: Tracked[] = [];
    for (let i = 0; i < MAX_CONNECTIONS + 50; i++) {
      const s = net.connect(port, host);
      opened.push(s);
      all.push(track(s));
      await new Promise((r) => setImmediate(r));
    }
    // The ones over the limit are closed right away, long before the handshake timeout.
    const deadline = performance.now() + HANDSHAKE_MS - 300;
    while (performance.now() < deadline && all.filter((t) => t.closedAfterMs !== undefined).length < 50) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const early = all.filter((t) => t.closedAfterMs !== undefined && t.closedAfterMs < HANDSHAKE_MS - 300).length;
    expect(early).toBeGreaterThanOrEqual(50);
    expect(await waitClosed(all, HANDSHAKE_MS + SLACK_MS)).toBe(0);
    // Slots are free again.
    expect(maxOf(await probe(5))).toBeLessThan(2_000);
    console.log(
      `max connections ${MAX_CONNECTIONS}: ${early} of ${all.length} refused at once; the rest closed by the handshake timeout`,
    );
  });

  it("slowloris at every stage (one byte a second) is cut off by the timeouts while others are served", async () => {
    const rssBefore = vmRssKb(pid);
    // 1. A TLS ClientHello, one byte a second.
    const hello: Tracked[] = [];
    for (let i = 0; i < 20; i++) {
      const s = net.connect(port, host);
      opened.push(s);
      hello.push(track(s));
      stops.push(trickle(s, Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])));
    }
    // 2. After the handshake, the HTTP/2 preface one byte a second.
    // 3. After the handshake, HTTP/1.1 request headers one byte a second.
    const preface: Tracked[] = [];
    const headers: Tracked[] = [];
    await Promise.all(
      Array.from(
        { length: 40 },
        (_, i) =>
          new Promise<void>((resolve, reject) => {
            const h2 = i < 20;
            const s = tls.connect(tlsOptions(h2 ? ["h2"] : ["http/1.1"]), () => {
              stops.push(
                trickle(s, Buffer.from(h2 ? "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" : `GET /healthz HTTP/1.1\r\nHost: ${host}\r\n`)),
              );
              resolve();
            });
            s.once("error", reject);
            opened.push(s);
            (h2 ? preface : headers).push(track(s));
          }),
      ),
    );
    // 4. A unary request whose body arrives one byte a second, on a proper HTTP/2 session.
    const session = http2.connect(cluster.url, {
      ca: cluster.client.ca,
      ...(cluster.client.cert && cluster.client.key ? { cert: cluster.client.cert, key: cluster.client.key } : {}),
    });
    session.on("error", () => {});
    const bodies = Array.from({ length: 10 }, () => {
      const stream = session.request({
        ":method": "POST",
        ":path": "/dce.v1.JobService/GetJob",
        "content-type": "application/grpc",
        te: "trailers",
        ...cluster.client.headers,
      });
      const t = { stream, openedAt: performance.now(), closedAfterMs: undefined as number | undefined };
      stream.on("error", () => {});
      stream.on("close", () => {
        t.closedAfterMs = performance.now() - t.openedAt;
      });
      // Declares a 1000-byte message, then sends it a byte a second.
      stops.push(trickle(stream, Buffer.concat([Buffer.from([0, 0, 0, 0x03, 0xe8]), Buffer.alloc(1000, 0x0a)])));
      return t;
    });
    const sessionClosed = new Promise<number>((resolve) => {
      const t0 = performance.now();
      session.on("close", () => resolve(performance.now() - t0));
    });

    const during = await probe(20);
    expect(maxOf(during)).toBeLessThan(2_000);

    expect(await waitClosed(hello, HANDSHAKE_MS + SLACK_MS)).toBe(0);
    expect(await waitClosed(preface, HANDSHAKE_MS + SLACK_MS)).toBe(0);
    expect(await waitClosed(headers, HANDSHAKE_MS + SLACK_MS)).toBe(0);
    const bodyDeadline = performance.now() + REQUEST_MS + SLACK_MS;
    while (performance.now() < bodyDeadline && bodies.some((b) => b.closedAfterMs === undefined)) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(bodies.filter((b) => b.closedAfterMs === undefined)).toEqual([]);
    // Reset by the coordinator (CANCEL) when the request timeout ran out, not answered.
    for (const b of bodies) {
      expect(b.stream.rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
      expect(b.closedAfterMs).toBeGreaterThanOrEqual(REQUEST_MS - 100);
    }
    // With no stream left, the session itself is closed after the idle timeout.
    const sessionMs = await Promise.race([
      sessionClosed,
      new Promise<number>((r) => setTimeout(() => r(-1), IDLE_MS + REQUEST_MS + SLACK_MS)),
    ]);
    expect(sessionMs).toBeGreaterThan(0);
    const rssAfter = vmRssKb(pid);
    console.log(
      `slowloris (1 byte/s): 20 ClientHello closed by ${maxOf(hello.map((t) => t.closedAfterMs ?? 0)).toFixed(0)} ms, ` +
        `20 HTTP/2 prefaces by ${maxOf(preface.map((t) => t.closedAfterMs ?? 0)).toFixed(0)} ms, ` +
        `20 HTTP/1.1 headers by ${maxOf(headers.map((t) => t.closedAfterMs ?? 0)).toFixed(0)} ms, ` +
        `10 request bodies reset by ${maxOf(bodies.map((t) => t.closedAfterMs ?? 0)).toFixed(0)} ms, session closed at ${sessionMs.toFixed(0)} ms; ` +
        `GetJob latency meanwhile max ${maxOf(during).toFixed(0)} ms; VmRSS kB ${rssBefore} -> ${rssAfter}`,
    );
    expect(rssAfter - rssBefore).toBeLessThan(100 * 1024);
  });
  it("a connection that holds a stream open but never answers pings is closed by the keepalive timeout", async () => {
    // HTTP/2 by hand, so that nothing answers the coordinator's PINGs: the preface, empty
    // SETTINGS, and a health Watch stream (streaming: exempt from the request timeout, and an
    // open stream keeps the idle timer off). Afterwards the client reads but never writes.
    const frame = (type: number, flags: number, streamId: number, payload: Buffer) => {
      const head = Buffer.alloc(9);
      head.writeUIntBE(payload.length, 0, 3);
      head.writeUInt8(type, 3);
      head.writeUInt8(flags, 4);
      head.writeUInt32BE(streamId, 5);
      return Buffer.concat([head, payload]);
    };
    // HPACK "literal header field without indexing, new name", for short names and values.
    const literal = (name: string, value: string) =>
      Buffer.concat([Buffer.from([0, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
    const headerBlock = Buffer.concat([
      literal(":method", "POST"),
      literal(":scheme", "https"),
      literal(":path", "/grpc.health.v1.Health/Watch"),
      literal(":authority", `${host}:${port}`),
      literal("content-type", "application/grpc"),
      literal("te", "trailers"),
      ...Object.entries(cluster.client.headers).map(([k, v]) => literal(k, v)),
    ]);
    const watchers: Tracked[] = [];
    const answered: boolean[] = [];
    await Promise.all(
      Array.from(
        { length: 5 },
        (_, i) =>
          new Promise<void>((resolve, reject) => {
            const s = tls.connect(tlsOptions(["h2"]), () => {
              s.write(
                Buffer.concat([
                  Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
                  frame(0x4, 0, 0, Buffer.alloc(0)),
                  frame(0x1, 0x4, 1, headerBlock),
                  frame(0x0, 0x1, 1, Buffer.from([0, 0, 0, 0, 0])),
                ]),
              );
              resolve();
            });
            s.once("error", reject);
            opened.push(s);
            const t = track(s);
            // The coordinator answers the Watch (a HEADERS frame on stream 1) before the pings start.
            let got = Buffer.alloc(0);
            s.on("data", (d: Buffer) => {
              got = Buffer.concat([got, d]);
              let at = 0;
              while (at + 9 <= got.length) {
                const length = got.readUIntBE(at, 3);
                const type = got.readUInt8(at + 3);
                const stream = got.readUInt32BE(at + 5) & 0x7fff_ffff;
                if (type === 0x1 && stream === 1) answered[i] = true;
                at += 9 + length;
              }
            });
            watchers.push(t);
          }),
      ),
    );
    const limitMs = KEEPALIVE_INTERVAL_MS + KEEPALIVE_TIMEOUT_MS;
    expect(await waitClosed(watchers, limitMs + KEEPALIVE_INTERVAL_MS + SLACK_MS)).toBe(0);
    expect(answered.filter(Boolean).length).toBe(5);
    for (const t of watchers) expect(t.closedAfterMs).toBeGreaterThanOrEqual(KEEPALIVE_TIMEOUT_MS);
    console.log(
      `keepalive: 5 connections holding a Watch stream without answering pings closed after ` +
        `${watchers.map((t) => (t.closedAfterMs ?? 0).toFixed(0)).join(", ")} ms (interval ${KEEPALIVE_INTERVAL_MS}, timeout ${KEEPALIVE_TIMEOUT_MS})`,
    );
  });
});
