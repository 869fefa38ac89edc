/**
 * Fuzzes every RPC of a real coordinator process with well-formed random messages,
 * malformed bytes and protocol abuse, through three clients: the Connect client with
 * the generated protobuf-es schemas, hand-made HTTP/2 requests, and an independent
 * gRPC client (@grpc/grpc-js + @grpc/proto-loader reading the .proto files).
 *
 * - Every call ends with a status well before the client gives up: a call still open
 *   `GRACE_MS` after the deadline it sent fails the run (issue 12: a Heartbeat whose
 *   worker_id held emoji got no answer), and so does DEADLINE_EXCEEDED (nothing here may
 *   take that long). String fields carry astral characters, combining marks, CJK, very
 *   long text, pairs straddling every cut point the coordinator uses, and lone surrogates
 *   (sent as gRPC+JSON, the way a JavaScript client can send them).
 * - Every status message is well-formed and at most 1024 code points.
 * - A well-formed message (one that decodes with the schema) is answered with a
 *   documented code: never INTERNAL, UNKNOWN or DATA_LOSS.
 * - Every error status carries exactly one dce.v1.ErrorInfo with a reason (docs/errors.md),
 *   checked through the Connect client and, as a grpc-status-details-bin trailer, grpc-js.
 * - Bytes that are not a valid message may get INTERNAL from the protocol layer (as
 *   gRPC specifies for parse errors), never UNKNOWN.
 * - Afterwards the coordinator still runs a normal job, and its RSS stayed bounded.
 *
 * Replay a run: DCE_FUZZ_SEED=<seed printed below> pnpm exec vitest run --project integration test/fuzz
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient as createConnectClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createClient } from "@dce/client-sdk";
import * as dceProto from "@dce/proto";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as healthPb from "../../packages/coordinator/src/gen/grpc/health/v1/health_pb.js";
import * as reflectionV1 from "../../packages/coordinator/src/gen/grpc/reflection/v1/reflection_pb.js";
import * as reflectionV1alpha from "../../packages/coordinator/src/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { type Cluster, naiveMultiply, ROOT, randomMatrix, sameBytes, startCluster } from "../support/cluster.js";
import { type LoadedMethod, loadedMethods, requestObjectArb } from "./support/grpc-js-fuzz.js";
import {
  badMessage,
  codeName,
  decodes,
  describeMessage,
  GRACE_MS,
  NO_ANSWER,
  pool,
  roughSize,
  short,
  Tally,
  vmRssKb,
} from "./support/harness.js";
import { type FuzzContext, messageArb, servicesOf } from "./support/proto-arbitraries.js";
import { rawCaseArb } from "./support/raw-cases.js";
import { connectRaw, type RawAnswer, rawCall } from "./support/raw-http2.js";

const SEED = Number(process.env.DCE_FUZZ_SEED ?? 20_240_611);
/** Requests per unary RPC and client; streaming RPCs get fewer (each holds a stream until its deadline). */
const SCHEMA_RUNS = 420;
const RAW_RUNS = 110;
const GRPC_JS_RUNS = 130;
const STREAM_RUNS = 25;
const CONCURRENCY = 16;
/** Larger messages are sent as binary protobuf only (see roughSize). */
const JSON_MAX_BYTES = 64 * 1024;
/** Deadline (grpc-timeout) of a unary call; health Watch streams get 300 ms, reflection 2 s. */
const CALL_TIMEOUT_MS = 8_000;

/** Codes a well-formed request may get (README "Errors", docs/limits.md). */
const NEVER_FOR_WELL_FORMED = new Set<Code>([Code.Internal, Code.Unknown, Code.DataLoss]);
/** Codes even malformed bytes must not get. */
const NEVER = new Set<Code>([Code.Unknown, Code.DataLoss]);

/**
 * Every service the coordinator serves, from the generated descriptors (new RPCs are fuzzed
 * without edits here); PeerService is served by workers to each other, not by the coordinator.
 */
const SERVICES: DescService[] = [
  ...servicesOf(dceProto as unknown as Record<string, unknown>).filter((s) => s.typeName !== dceProto.PeerService.typeName),
  ...servicesOf(healthPb as unknown as Record<string, unknown>),
  ...servicesOf(reflectionV1 as unknown as Record<string, unknown>),
  ...servicesOf(reflectionV1alpha as unknown as Record<string, unknown>),
];
const METHODS: DescMethod[] = SERVICES.flatMap((s) => s.methods);
const rpcName = (m: DescMethod) => `${m.parent.name}/${m.name}`;

const CODE_NAMES: Record<string, Code> = Object.fromEntries(
  Object.entries(Code)
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => [k.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase(), v as Code]),
);

/**
 * A Connect transport with the harness's credentials that sends messages over the
 * coordinator's limit (so the server, not the client, refuses them). Its HTTP/2
 * session may buffer far more than Node's default 10 MB: many large requests are in
 * flight at once, and a client session over its memory limit fails every stream on it.
 * With `json`, messages travel as gRPC+JSON.
 */
function fuzzTransport(cluster: Cluster, json = false): Transport {
  const creds = cluster.client;
  const withHeaders: Interceptor = (next) => (req) => {
    for (const [k, v] of Object.entries(creds.headers)) req.header.set(k, v);
    return next(req);
  };
  return createGrpcTransport({
    baseUrl: cluster.url,
    nodeOptions: {
      ca: creds.ca,
      ...(creds.cert && creds.key ? { cert: creds.cert, key: creds.key } : {}),
      maxSessionMemory: 1024,
    },
    readMaxBytes: 16 * 1024 * 1024,
    writeMaxBytes: 16 * 1024 * 1024,
    // gRPC+JSON carries lone surrogates as "\ud800" escapes: binary protobuf cannot.
    useBinaryFormat: !json,
    interceptors: [withHeaders],
  });
}

describe("fuzzing every RPC of a running coordinator", () => {
  let cluster: Cluster;
  let ctx: FuzzContext;
  let pid: number;
  const rss: number[] = [];
  /** Index in `rss` of the sample taken when the first phase ended. */
  const rssMarks = { afterSchema: 0 };
  let sampler: NodeJS.Timeout | undefined;
  const tally = new Tally();
  const sample = () => rss.push(vmRssKb(pid));

  beforeAll(async () => {
    console.log(`fuzz seed ${SEED}; replay with DCE_FUZZ_SEED=${SEED} pnpm exec vitest run --project integration test/fuzz`);
    // No workers while fuzzing: random FailShard/CompleteShards must not touch a real worker's leases.
    // Short long-polls keep thousands of random AcquireShards/GetJob calls quick.
    cluster = await startCluster({ workers: 0, extraCoordinatorArgs: ["--max-long-poll-ms", "100", "--log-level", "warn"] });
    pid = cluster.coordinator.child.pid as number;
    // Real ids and hashes, so random requests reach past the first lookup.
    const a = randomMatrix(4, 4, 1);
    const sdk = createClient({ baseUrl: cluster.url, transport: cluster.transport() });
    const job = await sdk.submitMatMul(a, a, { kernel: "reference" });
    const blobs = cluster.raw(dceProto.BlobService);
    const begun = await blobs.beginUpload({ sizeBytes: 64n, sha256: "0".repeat(64) });
    const worker = await cluster.raw(dceProto.WorkerService).registerWorker({
      name: "fuzz",
      kernels: [{ name: "reference", fingerprint: "fuzz-fp" }],
      threads: 1,
    });
    const status = await cluster.raw(dceProto.JobService).getJob({ jobId: job.id });
    const blobId = createHash("sha256").update(new Uint8Array(a.data.buffer)).digest("hex");
    ctx = {
      strings: [job.id, worker.workerId, begun.uploadId, blobId, "dce.v1.JobService", "grpc.health.v1.Health"],
      numbers: [Number(status.status?.version ?? 1n), 1, 2, 16, 128],
    };
    sample();
    sampler = setInterval(sample, 250);
  }, 60_000);

  afterAll(async () => {
    if (sampler) clearInterval(sampler);
    console.log(
      [
        ...tally.summary(SEED),
        `  coordinator VmRSS: start ${rss[0]} kB, after the first phase ${rss[rssMarks.afterSchema]} kB, max ${Math.max(...rss)} kB, end ${rss.at(-1)} kB`,
      ].join("\n"),
    );
    await cluster?.close();
  });

  it("answers random well-formed messages (Connect client, protobuf-es schemas) with documented codes", async () => {
    const before = tally.failures.length;
    type CallOptions = { headers: Record<string, string>; signal: AbortSignal };
    type Call = (req: unknown, opts: CallOptions) => unknown;
    const transports = { connect: fuzzTransport(cluster), "connect-json": fuzzTransport(cluster, true) };
    for (const [mi, method] of METHODS.entries()) {
      const calls = Object.fromEntries(
        Object.entries(transports).map(([name, t]) => {
          const client = createConnectClient(method.parent, t) as unknown as Record<string, Call>;
          return [name, client[method.localName] as Call];
        }),
      ) as Record<keyof typeof transports, Call>;
      const streaming = method.methodKind !== "unary";
      const runs = streaming ? STREAM_RUNS : SCHEMA_RUNS;
      // Streams that watch (health Watch) run until their deadline, which ends them with OK.
      const deadlineMs = method.methodKind === "unary" ? CALL_TIMEOUT_MS : method.methodKind === "server_streaming" ? 300 : 2_000;
      const inputs = fc.sample(messageArb(method.input, ctx), { numRuns: runs, seed: SEED + mi });
      await pool(inputs, CONCURRENCY, async (msg, i) => {
        // Every other request as gRPC+JSON, so that lone surrogates reach the server.
        const client = i % 2 === 1 && roughSize(msg, JSON_MAX_BYTES) < JSON_MAX_BYTES ? "connect-json" : "connect";
        const call = calls[client];
        // The deadline goes to the server; the client itself waits GRACE_MS longer for the status.
        const giveUp = new AbortController();
        const timer = setTimeout(() => giveUp.abort(), deadlineMs + GRACE_MS);
        const opts = { headers: { "grpc-timeout": `${deadlineMs}m` }, signal: giveUp.signal };
        let code: Code | 0 = 0;
        let message = "";
        let reasons: dceProto.ErrorReason[] = [];
        try {
          if (method.methodKind === "unary") {
            await call(msg, opts);
          } else if (method.methodKind === "server_streaming") {
            for await (const _ of call(msg, opts) as AsyncIterable<unknown>) {
              // drain
            }
          } else {
            const input = (async function* () {
              yield msg;
            })();
            for await (const _ of call(input, opts) as AsyncIterable<unknown>) {
              // drain
            }
          }
        } catch (e) {
          const ce = ConnectError.from(e);
          code = ce.code;
          message = ce.rawMessage;
          reasons = ce.findDetails(dceProto.ErrorInfoSchema).map((i) => i.reason);
        } finally {
          clearTimeout(timer);
        }
        // A random message over this client's own write limit never left it: nothing to judge.
        if (code === Code.ResourceExhausted && /larger than configured writeMaxBytes/.test(message)) return;
        const label = giveUp.signal.aborted ? NO_ANSWER : codeName(code);
        tally.add(rpcName(method), client, label);
        const why =
          label === NO_ANSWER
            ? `no status ${GRACE_MS} ms after the ${deadlineMs} ms deadline`
            : code === Code.DeadlineExceeded
              ? "ran into its deadline"
              : code !== 0 && NEVER_FOR_WELL_FORMED.has(code)
                ? "well-formed"
                : code !== 0 && (reasons.length !== 1 || reasons[0] === dceProto.ErrorReason.UNSPECIFIED)
                  ? "not exactly one ErrorInfo with a reason"
                  : badMessage(message);
        if (why !== undefined) {
          tally.fail({
            rpc: rpcName(method),
            client,
            kind: why,
            answer: `${label}: ${short(message)} [${reasons.map((r) => dceProto.ErrorReason[r]).join(",")}]`,
            request: describeMessage(method.input, msg),
          });
        }
      });
    }
    sample();
    rssMarks.afterSchema = rss.length - 1;
    const failures = tally.failures.slice(before);
    expect(failures, JSON.stringify(failures, null, 2)).toEqual([]);
  });

  it("answers malformed bodies, wrong content types, compressed and oversized payloads without UNKNOWN", async () => {
    const before = tally.failures.length;
    // Node's HTTP/2 flood protection ends a connection that keeps sending frames on streams the
    // coordinator already refused (early rejections of oversized or compressed bodies): that
    // connection is replaced, and the requests it took down are sent again on the new one.
    let session = connectRaw(cluster.url, cluster.client);
    let sessionsEnded = 0;
    const liveSession = () => {
      if (session.closed || session.destroyed) {
        sessionsEnded++;
        session = connectRaw(cluster.url, cluster.client);
      }
      return session;
    };
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024)); // 64 MiB of zeros in ~64 KiB
    const auth = cluster.client.headers;
    const unary = METHODS.filter((m) => m.methodKind === "unary");
    try {
      for (const [mi, method] of unary.entries()) {
        const valid = fc.sample(messageArb(method.input, ctx), { numRuns: RAW_RUNS, seed: SEED + 1000 + mi });
        const caseArb = rawCaseArb(method, valid, { auth, bomb });
        const cases = fc.sample(caseArb, { numRuns: RAW_RUNS, seed: SEED + 2000 + mi });
        await pool(cases, 8, async (c) => {
          const path = `/${method.parent.typeName}/${method.name}`;
          // A call cut short because its connection ended (the flood protection above replaces
          // it) has no answer to judge: send it again on a fresh connection.
          const call = async (): Promise<{ answer: RawAnswer; cut: boolean }> => {
            const session = liveSession();
            const answer = await rawCall(session, path, c.headers, c.body, CALL_TIMEOUT_MS);
            const unanswered = answer.grpcStatus === undefined && answer.connectCode === undefined && !answer.timedOut;
            return { answer, cut: unanswered && (answer.http === 0 || session.closed || session.destroyed) };
          };
          let { answer, cut } = await call();
          for (let retry = 0; retry < 3 && cut; retry++) ({ answer, cut } = await call());
          let code: Code | 0 | undefined;
          if (answer.grpcStatus !== undefined) code = answer.grpcStatus as Code | 0;
          else if (answer.connectCode !== undefined) code = CODE_NAMES[answer.connectCode] ?? Code.Unknown;
          else if (answer.http === 200 && c.headers["content-type"]?.startsWith("application/json")) code = 0;
          const label =
            code !== undefined
              ? codeName(code)
              : answer.timedOut
                ? NO_ANSWER
                : answer.http
                  ? `HTTP ${answer.http}`
                  : `RST ${answer.reset ?? "?"}`;
          tally.add(rpcName(method), "raw-http2", label);
          const bad =
            answer.timedOut ||
            (code !== undefined && code !== 0 && badMessage(answer.message) !== undefined) ||
            (code !== undefined && code !== 0 && (c.wellFormed ? NEVER_FOR_WELL_FORMED : NEVER).has(code)) ||
            // Without a gRPC or Connect status, only "415 Unsupported Media Type" for a content type we do not speak is fine.
            (code === undefined && !(c.kind === "wrong-content-type" && answer.http === 415));
          if (bad) {
            tally.fail({
              rpc: rpcName(method),
              client: "raw-http2",
              kind: `${c.kind}${c.wellFormed ? " (decodes)" : ""}${code !== undefined && code !== 0 ? ` ${badMessage(answer.message) ?? ""}` : ""}`,
              answer: `${label}: ${answer.message}`,
              request: short(Buffer.from(c.body.subarray(0, 120)).toString("hex")),
            });
          }
        });
      }
    } finally {
      session.close();
      console.log(`raw HTTP/2: ${sessionsEnded} connections ended by the coordinator's flood protection and replaced`);
    }
    const failures = tally.failures.slice(before);
    expect(failures, JSON.stringify(failures, null, 2)).toEqual([]);
  });

  it("an independent gRPC client (@grpc/grpc-js + proto-loader) sees no INTERNAL or UNKNOWN for well-formed messages", async () => {
    const before = tally.failures.length;
    const def = protoLoader.loadSync(
      [
        "dce/v1/job.proto",
        "dce/v1/blob.proto",
        "dce/v1/worker.proto",
        "grpc/health/v1/health.proto",
        "grpc/reflection/v1/reflection.proto",
        "grpc/reflection/v1alpha/reflection.proto",
      ],
      {
        includeDirs: [join(ROOT, "packages/proto/proto"), join(ROOT, "packages/coordinator/proto")],
        longs: String,
        enums: Number,
        defaults: false,
        oneofs: true,
      },
    );
    const methods = loadedMethods(def);
    // Every RPC the repo's descriptors know is also reached through the .proto files.
    expect(new Set(methods.map((m) => m.path))).toEqual(new Set(METHODS.map((m) => `/${m.parent.typeName}/${m.name}`)));
    const creds = cluster.client;
    const channelCreds = grpc.credentials.createSsl(
      Buffer.from(creds.ca),
      creds.key ? Buffer.from(creds.key) : null,
      creds.cert ? Buffer.from(creds.cert) : null,
    );
    const target = new URL(cluster.url).host;
    const client = new grpc.Client(target, channelCreds, {
      "grpc.max_send_message_length": -1,
      "grpc.max_receive_message_length": 16 * 1024 * 1024,
    });
    const metadata = () => {
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries(creds.headers)) md.set(k, v);
      return md;
    };
    const identity = (b: Buffer) => b;
    // The deadline travels as grpc-timeout metadata rather than grpc-js's own `deadline`, whose
    // local timer would end the call at the very instant the server is due to answer.
    const send = (
      m: LoadedMethod,
      body: Buffer,
    ): Promise<{ code: Code | 0 | typeof NO_ANSWER; message: string; details: boolean }> =>
      new Promise((resolve) => {
        const deadlineMs = m.responseStream ? 300 : m.requestStream ? 2_000 : CALL_TIMEOUT_MS;
        const md = metadata();
        md.set("grpc-timeout", `${deadlineMs}m`);
        let call: grpc.ClientUnaryCall | grpc.ClientReadableStream<Buffer> | grpc.ClientDuplexStream<Buffer, Buffer>;
        let settled = false;
        const done = (code: number | typeof NO_ANSWER, message = "", trailer?: grpc.Metadata) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          const details = (trailer?.get("grpc-status-details-bin").length ?? 0) > 0;
          resolve({ code: code as Code | 0 | typeof NO_ANSWER, message, details });
        };
        const timer = setTimeout(() => {
          done(NO_ANSWER);
          call.cancel();
        }, deadlineMs + GRACE_MS);
        if (m.requestStream || m.responseStream) {
          const stream = m.requestStream
            ? client.makeBidiStreamRequest(m.path, identity, identity, md)
            : client.makeServerStreamRequest(m.path, identity, identity, body, md);
          call = stream;
          stream.on("data", () => {});
          stream.on("error", (e: grpc.ServiceError) => done(e.code, e.details, e.metadata));
          stream.on("status", (s: grpc.StatusObject) => done(s.code, s.details, s.metadata));
          if (m.requestStream) {
            (stream as grpc.ClientDuplexStream<Buffer, Buffer>).write(body);
            (stream as grpc.ClientDuplexStream<Buffer, Buffer>).end();
          }
          return;
        }
        call = client.makeUnaryRequest(m.path, identity, identity, body, md, (err) =>
          done(err ? err.code : 0, err?.details, err?.metadata),
        );
      });
    const strings = ctx.strings;
    try {
      for (const [mi, m] of methods.entries()) {
        const rpc = `${m.service.slice(m.service.lastIndexOf(".") + 1)}/${m.name}`;
        const runs = m.requestStream || m.responseStream ? STREAM_RUNS : GRPC_JS_RUNS;
        const objects = fc.sample(requestObjectArb(def, m, strings), { numRuns: runs, seed: SEED + 3000 + mi });
        const garbage = fc.sample(fc.uint8Array({ maxLength: 120 }), { numRuns: Math.ceil(runs / 3), seed: SEED + 4000 + mi });
        const desc = METHODS.find((d) => `/${d.parent.typeName}/${d.name}` === m.path);
        if (!desc) throw new Error(`no descriptor for ${m.path}`);
        type Job = { body: Buffer; wellFormed: boolean; what: string };
        const jobs: Job[] = [];
        for (const o of objects) {
          let body: Buffer;
          try {
            body = m.serialize(o);
          } catch {
            continue; // protobufjs cannot encode it (e.g. "abc" for an integer): nothing reaches the server
          }
          jobs.push({ body, wellFormed: decodes(desc.input, body), what: short(JSON.stringify(o)) });
        }
        for (const g of garbage) {
          const body = Buffer.from(g);
          jobs.push({ body, wellFormed: decodes(desc.input, body), what: `bytes ${body.toString("hex").slice(0, 240)}` });
        }
        await pool(jobs, CONCURRENCY, async (j) => {
          const { code, message, details } = await send(m, j.body);
          const label = code === NO_ANSWER ? NO_ANSWER : codeName(code);
          tally.add(rpc, "grpc-js", label);
          const why =
            code === NO_ANSWER
              ? `no status ${GRACE_MS} ms after the deadline`
              : code === Code.DeadlineExceeded
                ? "ran into its deadline"
                : code !== 0 && (j.wellFormed ? NEVER_FOR_WELL_FORMED : NEVER).has(code)
                  ? j.wellFormed
                    ? "well-formed"
                    : "malformed"
                  : code !== 0 && !details
                    ? "no ErrorInfo (grpc-status-details-bin)"
                    : badMessage(message);
          if (why !== undefined)
            tally.fail({ rpc, client: "grpc-js", kind: why, answer: `${label}: ${short(message)}`, request: j.what });
        });
      }
    } finally {
      client.close();
    }
    const failures = tally.failures.slice(before);
    expect(failures, JSON.stringify(failures, null, 2)).toEqual([]);
  });

  it("keeps serving with bounded memory: a normal job succeeds after the fuzzing", async () => {
    expect(tally.total).toBeGreaterThanOrEqual(10_000);
    for (const method of METHODS) expect(tally.perRpc.get(rpcName(method))?.size ?? 0, rpcName(method)).toBeGreaterThan(0);
    await cluster.addWorker();
    const sdk = createClient({ baseUrl: cluster.url, transport: cluster.transport() });
    const a = randomMatrix(40, 30, 7);
    const b = randomMatrix(30, 20, 8);
    const job = await sdk.submitMatMul(a, b, { kernel: "reference", tileSize: 16, idempotencyKey: `after-fuzz-${SEED}` });
    const c = await job.result({ timeoutMs: 60_000 });
    expect(sameBytes(c.data, naiveMultiply(a, b))).toBe(true);
    sample();
    const [first = 0] = rss;
    const peak = Math.max(...rss);
    const later = Math.max(...rss.slice(rssMarks.afterSchema));
    // Thousands of requests, some of 5-6 MiB and gzip bombs of 64 MiB: the coordinator never holds
    // them at once (at most CONCURRENCY messages of 4 MiB), so its RSS levels off after the first
    // phase instead of growing with the number of requests.
    expect(peak - first, `VmRSS grew from ${first} kB to ${peak} kB`).toBeLessThan(400 * 1024);
    expect(
      later - (rss[rssMarks.afterSchema] ?? 0),
      `VmRSS ${rss[rssMarks.afterSchema]} kB after the first phase, ${later} kB later`,
    ).toBeLessThan(150 * 1024);
  });
});
