import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { ErrorInfoSchema, ErrorReason } from "@dce/proto";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { Health, HealthCheckResponseSchema } from "../../packages/coordinator/src/gen/grpc/health/v1/health_pb.js";
import { createRpcHandler } from "../../packages/coordinator/src/rpc-handler.js";

// The last line behind the error boundary: whatever fails outside the handlers (here a
// status message that cannot be encoded, with no boundary to clean it, and a throwing
// contextValues), every call still ends at once. connect-node's own adapter left the
// first open until the client's deadline and let the second crash the process.

const DEADLINE_MS = 5_000;
/** A lone surrogate: Connect's gRPC and gRPC-web handlers cannot percent-encode it into grpc-message. */
const LONE = `${"a".repeat(63)}\u{1f680}`.slice(0, 64);

const servers: { server: http2.Http2Server; sessions: Set<http2.ServerHttp2Session> }[] = [];
afterEach(async () => {
  for (const { server, sessions } of servers.splice(0)) {
    // The clients keep their connections open: end them, or close() waits for them.
    for (const s of sessions) s.destroy();
    await new Promise((r) => server.close(r));
  }
});

/** Starts an h2c server on loopback with a Health service whose calls fail as `fail` says. */
async function serve(fail: { contextValues?: boolean }) {
  let logged = "";
  const logger = pino(
    { level: "error" },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        logged += chunk.toString();
        done();
      },
    }),
  );
  const handler = createRpcHandler({
    logger,
    routes: (r) =>
      r.service(Health, {
        check() {
          throw new ConnectError(`worker ${LONE} is not registered`, Code.NotFound);
        },
        list() {
          return {};
        },
        async *watch() {
          yield create(HealthCheckResponseSchema, { status: 1 });
          throw new ConnectError(`gone ${LONE}`, Code.Unavailable);
        },
      }),
    ...(fail.contextValues
      ? {
          contextValues: () => {
            throw new Error("cannot read the peer certificate");
          },
        }
      : {}),
  });
  const server = http2.createServer(handler);
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  servers.push({ server, sessions });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const transports: Record<string, Transport> = {
    grpc: createGrpcTransport({ baseUrl }),
    "grpc-web": createGrpcWebTransport({ baseUrl, httpVersion: "2" }),
    connect: createConnectTransport({ baseUrl, httpVersion: "2" }),
  };
  return { transports, logged: () => logged };
}

/** The call's error, and how long it took; a call that succeeds fails the test. */
async function outcome(call: () => Promise<unknown>): Promise<{ e: ConnectError; ms: number }> {
  const t0 = performance.now();
  try {
    await call();
  } catch (e) {
    return { e: ConnectError.from(e), ms: performance.now() - t0 };
  }
  throw new Error("the call succeeded");
}

describe("createRpcHandler", () => {
  it.each(["grpc", "grpc-web"])("%s: a status that cannot be encoded ends the call at once with INTERNAL", async (protocol) => {
    const { transports, logged } = await serve({});
    const health = createClient(Health, transports[protocol] as Transport);
    const { e, ms } = await outcome(() => health.check({}, { timeoutMs: DEADLINE_MS }));
    expect(e.code, e.message).toBe(Code.Internal);
    expect(ms).toBeLessThan(DEADLINE_MS / 2);
    expect(logged()).toContain("URIError");
  });

  it("an error after a stream's first message resets the stream at once", async () => {
    const { transports } = await serve({});
    const health = createClient(Health, transports.grpc as Transport);
    const seen: number[] = [];
    const { e, ms } = await outcome(async () => {
      for await (const m of health.watch({}, { timeoutMs: DEADLINE_MS })) seen.push(m.status);
    });
    expect(seen).toEqual([1]);
    expect(e.code, e.message).toBe(Code.Internal);
    expect(ms).toBeLessThan(DEADLINE_MS / 2);
  });

  it("gRPC: a status connect-es sets before any interceptor runs gets the ErrorInfo of its code", async () => {
    const { transports } = await serve({});
    const health = createClient(Health, transports.grpc as Transport);
    // A grpc-timeout that does not parse is refused by connect-es itself, outside the error boundary.
    const { e } = await outcome(() => health.list({}, { headers: { "grpc-timeout": "soon" } }));
    expect(e.code, e.message).toBe(Code.InvalidArgument);
    expect(e.findDetails(ErrorInfoSchema).map((i) => i.reason)).toEqual([ErrorReason.MALFORMED_REQUEST]);
  });

  it.each(["grpc", "grpc-web", "connect"])(
    "%s: a throwing contextValues is answered INTERNAL, and the server lives",
    async (protocol) => {
      const { transports, logged } = await serve({ contextValues: true });
      const health = createClient(Health, transports[protocol] as Transport);
      const { e, ms } = await outcome(() => health.list({}, { timeoutMs: DEADLINE_MS }));
      expect(e.code, e.message).toBe(Code.Internal);
      expect(e.rawMessage).toBe("internal error");
      expect(e.findDetails(ErrorInfoSchema).map((i) => i.reason)).toEqual([ErrorReason.INTERNAL]);
      expect(ms).toBeLessThan(DEADLINE_MS / 2);
      expect(logged()).toContain("cannot read the peer certificate");
      await expect(health.list({}, { timeoutMs: DEADLINE_MS })).rejects.toMatchObject({ code: Code.Internal });
    },
  );
});
