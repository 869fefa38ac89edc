import * as tls from "node:tls";
import { Code, ConnectError } from "@connectrpc/connect";
import { WorkerService } from "@dce/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectRaw, envelope, rawCall } from "../fuzz/support/raw-http2.js";
import { type Cluster, startCluster } from "../support/cluster.js";

// Issue 12, "a call that never answers": a Heartbeat whose worker_id is ~3 KB of mixed ASCII,
// emoji and CJK text got no answer; the client waited until its own deadline. The id was cut
// with slice(0, 64) inside a surrogate pair, and the lone surrogate made the grpc-message
// trailer impossible to encode. Every call here must be answered long before its deadline.

const DEADLINE_MS = 10_000;
/** An answer slower than half the deadline would be the old hang by another name. */
const PROMPT_MS = DEADLINE_MS / 2;

/** ~3 KB of valid UTF-8 whose 64th UTF-16 unit (the coordinator's cut point) is the first half of an emoji. */
function reportedWorkerId(): string {
  const head = `worker-ascii-${"x".repeat(50)}`;
  const id = `${head}\u{1f680}${"漢字テスト-\u{1f4a5}-mixed-ascii-".repeat(100)}`;
  expect(head.length).toBe(63);
  expect(Buffer.byteLength(id, "utf8")).toBeGreaterThan(3000);
  return id;
}

function isWellFormed(s: string): boolean {
  try {
    encodeURIComponent(s);
    return true;
  } catch {
    return false;
  }
}

describe("calls whose error message quotes awkward client text are answered", () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster({ workers: 0, extraCoordinatorArgs: ["--log-level", "warn"] });
  }, 60_000);

  afterAll(async () => {
    await cluster?.close();
  });

  it("a Heartbeat with a 3 KB mixed ASCII/emoji/CJK worker_id gets NOT_FOUND at once, with a well-formed message", async () => {
    const workerId = reportedWorkerId();
    const t0 = performance.now();
    let answer: ConnectError | undefined;
    try {
      await cluster.raw(WorkerService).heartbeat({ workerId, leases: [] }, { timeoutMs: DEADLINE_MS });
    } catch (e) {
      answer = ConnectError.from(e);
    }
    const ms = performance.now() - t0;
    expect(answer?.code, `${answer?.message} after ${Math.round(ms)} ms`).toBe(Code.NotFound);
    expect(ms).toBeLessThan(PROMPT_MS);
    const message = answer?.rawMessage ?? "";
    expect(isWellFormed(message)).toBe(true);
    expect(message).toBe(`worker worker-ascii-${"x".repeat(50)}… is not registered (register again)`);
    expect(cluster.coordinator.stderr).not.toContain("URIError");
  });

  it("a gRPC+JSON request whose parse error would quote a lone surrogate is answered at once, well-formed", async () => {
    const session = connectRaw(cluster.url, cluster.client);
    try {
      const headers = { "content-type": "application/grpc+json", te: "trailers", ...cluster.client.headers };
      // "\ud800" is a JSON escape: parsed as sent, the string holds a lone surrogate, which the parse error quotes.
      const body = envelope(Buffer.from('{"threads":"\\ud800"}'));
      const t0 = performance.now();
      const answer = await rawCall(session, "/dce.v1.WorkerService/RegisterWorker", headers, body, DEADLINE_MS);
      expect(answer.timedOut, "no answer before the deadline").toBeUndefined();
      expect(performance.now() - t0).toBeLessThan(PROMPT_MS);
      expect(answer.grpcStatus).toBe(Code.InvalidArgument);
      expect(answer.message).toMatch(/expected number \(uint32\), got "\ufffd"$/);
    } finally {
      session.close();
    }
  });

  it("an HTTP/1.0 request without a Host header is answered, and the coordinator keeps running", async () => {
    const { port } = new URL(cluster.url);
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: "127.0.0.1", port: Number(port), ca: cluster.ca, ALPNProtocols: ["http/1.1"] });
      let text = "";
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no answer in ${DEADLINE_MS} ms: ${text}`));
      }, DEADLINE_MS);
      socket.on("secureConnect", () => {
        socket.write(
          "POST /dce.v1.WorkerService/Heartbeat HTTP/1.0\r\ncontent-type: application/json\r\n" +
            "connect-protocol-version: 1\r\ncontent-length: 2\r\n\r\n{}",
        );
      });
      socket.on("data", (d: Buffer) => {
        text += d.toString();
      });
      socket.on("error", () => {});
      socket.on("close", () => {
        clearTimeout(timer);
        resolve(text);
      });
    });
    expect(reply).toMatch(/^HTTP\/1\.1 500 /);
    // Still serving: the request did not take the process down.
    await new Promise((r) => setTimeout(r, 200));
    expect(cluster.coordinator.child.exitCode).toBeNull();
    await expect(cluster.raw(WorkerService).heartbeat({ workerId: "nobody" }, { timeoutMs: DEADLINE_MS })).rejects.toMatchObject({
      code: Code.NotFound,
    });
  });
});
