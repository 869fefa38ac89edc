/**
 * Fuzzes every RPC of a real coordinator process with well-formed random messages,
 * malformed bytes and protocol abuse, through three clients: the Connect client with
 * the generated protobuf-es schemas, hand-made HTTP/2 requests, and an independent
 * gRPC client (@grpc/grpc-js + @grpc/proto-loader reading the .proto files).
 *
 * - A well-formed message (one that decodes with the schema) is answered with a
 *   documented code: never INTERNAL, UNKNOWN or DATA_LOSS.
 * - Bytes that are not a valid message may get INTERNAL from the protocol layer (as
 *   gRPC specifies for parse errors), never UNKNOWN.
 * - Afterwards the coordinator still runs a normal job, and its RSS stayed bounded.
 *
 * Replay a run: DCE_FUZZ_SEED=<seed printed below> pnpm exec vitest run --project integration test/fuzz
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import {
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  fromJsonString,
  type Message,
  toBinary,
  toJsonString,
} from "@bufbuild/protobuf";
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
import { type FuzzContext, messageArb, servicesOf } from "./support/proto-arbitraries.js";
import { connectRaw, envelope, type RawAnswer, rawCall } from "./support/raw-http2.js";

const SEED = Number(process.env.DCE_FUZZ_SEED ?? 20_240_611);
/** Requests per unary RPC and client; streaming RPCs get fewer (each holds a stream until its deadline). */
const SCHEMA_RUNS = 420;
const RAW_RUNS = 110;
const GRPC_JS_RUNS = 130;
const STREAM_RUNS = 25;
const CONCURRENCY = 16;
const CALL_TIMEOUT_MS = 8_000;

/** Codes a well-formed request may get (README "Errors", docs/limits.md). */
const NEVER_FOR_WELL_FORMED = new Set<Code>([Code.Internal, Code.Unknown, Code.DataLoss]);
/** Codes even malformed bytes must not get. */
const NEVER = new Set<Code>([Code.Unknown, Code.DataLoss]);

/** Every service the coordinator serves, from the generated descriptors (new RPCs are fuzzed without edits here). */
const SERVICES: DescService[] = [
  ...servicesOf(dceProto as unknown as Record<string, unknown>),
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

interface Failure {
  readonly rpc: string;
  readonly client: string;
  readonly kind: string;
  readonly answer: string;
  readonly request: string;
}

/** Counts per RPC and per answer, and the failures, over the whole file. */
class Tally {
  readonly perRpc = new Map<string, Map<string, number>>();
  readonly perClient = new Map<string, number>();
  readonly failures: Failure[] = [];
  total = 0;
  add(rpc: string, client: string, answer: string): void {
    const m = this.perRpc.get(rpc) ?? new Map<string, number>();
    this.perRpc.set(rpc, m);
    m.set(answer, (m.get(answer) ?? 0) + 1);
    this.perClient.set(client, (this.perClient.get(client) ?? 0) + 1);
    this.total++;
  }
  fail(f: Failure): void {
    if (this.failures.length < 300) this.failures.push(f);
  }
}

const codeName = (c: Code | 0) => (c === 0 ? "OK" : (Code[c] ?? String(c)));

/** Runs `tasks` with at most `limit` in flight. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i] as T, i);
    }
  });
  await Promise.all(workers);
}

function vmRssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : 0;
}

/** Does `bytes` decode as `schema`? (Then the request is well-formed, whatever it says.) */
function decodes(schema: DescMessage, bytes: Uint8Array): boolean {
  try {
    fromBinary(schema, bytes);
    return true;
  } catch {
    return false;
  }
}

function decodesJson(schema: DescMessage, json: string): boolean {
  try {
    fromJsonString(schema, json);
    return true;
  } catch {
    return false;
  }
}

const short = (s: string) => (s.length > 300 ? `${s.slice(0, 300)}... (${s.length} chars)` : s);

function describeMessage(schema: DescMessage, m: Message): string {
  try {
    return short(toJsonString(schema, m as never));
  } catch {
    return "(not printable as JSON)";
  }
}

/** An arbitrary that builds its value only when it is picked (large bodies are costly to build). */
const lazy = <T>(build: () => T): fc.Arbitrary<T> => fc.constant(0).map(build);

/**
 * A Connect transport with the harness's credentials that sends messages over the
 * coordinator's limit (so the server, not the client, refuses them). Its HTTP/2
 * session may buffer far more than Node's default 10 MB: many large requests are in
 * flight at once, and a client session over its memory limit fails every stream on it.
 */
function fuzzTransport(cluster: Cluster): Transport {
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
    const lines = [...tally.perRpc.entries()]
      .sort(([x], [y]) => x.localeCompare(y))
      .map(([rpc, codes]) => {
        const n = [...codes.values()].reduce((s, v) => s + v, 0);
        const parts = [...codes.entries()].sort((x, y) => y[1] - x[1]).map(([c, k]) => `${c} ${k}`);
        return `  ${rpc.padEnd(52)} ${String(n).padStart(5)}  ${parts.join(", ")}`;
      });
    const codes = new Map<string, number>();
    for (const m of tally.perRpc.values()) for (const [c, k] of m) codes.set(c, (codes.get(c) ?? 0) + k);
    console.log(
      [
        `fuzz: ${tally.total} requests (seed ${SEED}); per client: ${[...tally.perClient].map(([c, n]) => `${c} ${n}`).join(", ")}`,
        ...lines,
        `  codes: ${[...codes.entries()]
          .sort((x, y) => y[1] - x[1])
          .map(([c, k]) => `${c} ${k}`)
          .join(", ")}`,
        `  coordinator VmRSS: start ${rss[0]} kB, after the first phase ${rss[rssMarks.afterSchema]} kB, max ${Math.max(...rss)} kB, end ${rss.at(-1)} kB`,
      ].join("\n"),
    );
    await cluster?.close();
  });

  it("answers random well-formed messages (Connect client, protobuf-es schemas) with documented codes", async () => {
    const before = tally.failures.length;
    const transport = fuzzTransport(cluster);
    for (const [mi, method] of METHODS.entries()) {
      const service = method.parent;
      const client = createConnectClient(service, transport) as unknown as Record<
        string,
        (req: unknown, opts: { timeoutMs: number }) => unknown
      >;
      const call = client[method.localName] as (req: unknown, opts: { timeoutMs: number }) => unknown;
      const streaming = method.methodKind !== "unary";
      const runs = streaming ? STREAM_RUNS : SCHEMA_RUNS;
      const inputs = fc.sample(messageArb(method.input, ctx), { numRuns: runs, seed: SEED + mi });
      await pool(inputs, CONCURRENCY, async (msg) => {
        let code: Code | 0 = 0;
        let message = "";
        try {
          if (method.methodKind === "unary") {
            await call(msg, { timeoutMs: CALL_TIMEOUT_MS });
          } else if (method.methodKind === "server_streaming") {
            // Streams that watch (health Watch) run until their deadline.
            for await (const _ of call(msg, { timeoutMs: 300 }) as AsyncIterable<unknown>) {
              // drain
            }
          } else {
            const input = (async function* () {
              yield msg;
            })();
            for await (const _ of call(input, { timeoutMs: 2_000 }) as AsyncIterable<unknown>) {
              // drain
            }
          }
        } catch (e) {
          const ce = ConnectError.from(e);
          code = ce.code;
          message = ce.rawMessage;
        }
        tally.add(rpcName(method), "connect", codeName(code));
        if (code !== 0 && NEVER_FOR_WELL_FORMED.has(code)) {
          tally.fail({
            rpc: rpcName(method),
            client: "connect",
            kind: "well-formed",
            answer: `${codeName(code)}: ${message}`,
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
    const grpcHeaders = { "content-type": "application/grpc", te: "trailers", ...auth };
    type RawCase = { kind: string; headers: Record<string, string>; body: Uint8Array; wellFormed: boolean };
    const unary = METHODS.filter((m) => m.methodKind === "unary");
    try {
      for (const [mi, method] of unary.entries()) {
        const valid = fc.sample(messageArb(method.input, ctx), { numRuns: RAW_RUNS, seed: SEED + 1000 + mi });
        const caseArb: fc.Arbitrary<RawCase> = fc.integer({ min: 0, max: valid.length - 1 }).chain((vi) => {
          const bytes = toBinary(method.input, valid[vi] as never);
          const grpcCase = (kind: string, payload: Uint8Array, wellFormed = decodes(method.input, payload)): RawCase => ({
            kind,
            headers: grpcHeaders,
            body: envelope(payload),
            wellFormed,
          });
          return fc.oneof(
            fc.uint8Array({ maxLength: 200 }).map((g) => grpcCase("garbage", g)),
            fc.nat(bytes.length).map((n) => grpcCase("truncated", bytes.subarray(0, n))),
            fc.tuple(fc.nat(Math.max(0, bytes.length - 1)), fc.integer({ min: 0, max: 255 })).map(([at, v]) => {
              const copy = Uint8Array.from(bytes);
              if (copy.length > 0) copy[at] = v;
              return grpcCase("mutated", copy);
            }),
            // An unknown field (number 4095, varint) is valid protobuf and must be ignored.
            lazy(() => grpcCase("unknown-field", Buffer.concat([bytes, Buffer.from([0xf8, 0xff, 0x01, 0x2a])]))),
            // A varint of 11 bytes is never valid.
            lazy(() =>
              grpcCase("overlong-varint", Buffer.concat([Buffer.from([0x08]), Buffer.alloc(10, 0xff), Buffer.from([0x01])])),
            ),
            lazy(() => ({
              kind: "short-envelope",
              headers: grpcHeaders,
              body: envelope(bytes, { declaredLength: bytes.length + 100 }),
              wellFormed: false,
            })),
            lazy(() => ({
              kind: "4GiB-declared",
              headers: grpcHeaders,
              body: envelope(bytes, { declaredLength: 0xffff_ffff }),
              wellFormed: false,
            })),
            lazy(() => ({
              kind: "compressed-flag",
              headers: grpcHeaders,
              body: envelope(bytes, { flags: 1 }),
              wellFormed: false,
            })),
            lazy(() => ({
              kind: "gzip-bomb",
              headers: { ...grpcHeaders, "grpc-encoding": "gzip" },
              body: envelope(bomb, { flags: 1 }),
              wellFormed: false,
            })),
            lazy(() => ({
              kind: "unknown-encoding",
              headers: { ...grpcHeaders, "grpc-encoding": "snappy" },
              body: envelope(bytes, { flags: 1 }),
              wellFormed: false,
            })),
            lazy(() => ({
              kind: "two-messages",
              headers: grpcHeaders,
              body: Buffer.concat([envelope(bytes), envelope(bytes)]),
              wellFormed: false,
            })),
            lazy(() => ({ kind: "empty-body", headers: grpcHeaders, body: new Uint8Array(0), wellFormed: false })),
            // Over the 4 MiB limit, with a valid unknown field (number 4095, 6 MiB of bytes) so that it decodes.
            lazy(() =>
              grpcCase(
                "oversized",
                Buffer.concat([bytes, Buffer.from([0xfa, 0xff, 0x01, 0x80, 0x80, 0x80, 0x03]), Buffer.alloc(6 << 20)]),
              ),
            ),
            fc.constantFrom("text/plain", "application/xml", "application/grpc+thrift", "multipart/form-data", "").map((ct) => ({
              kind: "wrong-content-type",
              headers: { ...grpcHeaders, "content-type": ct },
              body: envelope(bytes),
              wellFormed: false,
            })),
            // The Connect protocol with JSON: NaN, infinities, negative and fractional sizes, huge numbers.
            fc
              .tuple(
                fc.constantFrom("unknownField", ...method.input.fields.map((f) => f.jsonName)),
                fc.constantFrom(
                  '"NaN"',
                  '"Infinity"',
                  "-1",
                  "-1.5",
                  "1e400",
                  '"-5"',
                  "18446744073709551616",
                  "null",
                  "[]",
                  '{"x":1}',
                  '"\\u0000"',
                ),
              )
              .map(([field, v]) => {
                const json = `{"${field}":${v}}`;
                return {
                  kind: "connect-json",
                  headers: { "content-type": "application/json", "connect-protocol-version": "1", ...auth },
                  body: Buffer.from(json),
                  wellFormed: decodesJson(method.input, json),
                };
              }),
            lazy(() => ({
              kind: "connect-json-garbage",
              headers: { "content-type": "application/json", "connect-protocol-version": "1", ...auth },
              body: Buffer.from('{"unterminated'),
              wellFormed: false,
            })),
            lazy(() => ({
              kind: "connect-gzip-bomb",
              headers: {
                "content-type": "application/proto",
                "content-encoding": "gzip",
                "connect-protocol-version": "1",
                ...auth,
              },
              body: bomb,
              wellFormed: false,
            })),
          );
        });
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
                ? "TIMEOUT"
                : answer.http
                  ? `HTTP ${answer.http}`
                  : `RST ${answer.reset ?? "?"}`;
          tally.add(rpcName(method), "raw-http2", label);
          const bad =
            answer.timedOut ||
            (code !== undefined && code !== 0 && (c.wellFormed ? NEVER_FOR_WELL_FORMED : NEVER).has(code)) ||
            // Without a gRPC or Connect status, only "415 Unsupported Media Type" for a content type we do not speak is fine.
            (code === undefined && !(c.kind === "wrong-content-type" && answer.http === 415));
          if (bad) {
            tally.fail({
              rpc: rpcName(method),
              client: "raw-http2",
              kind: `${c.kind}${c.wellFormed ? " (decodes)" : ""}`,
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
    const send = (m: LoadedMethod, body: Buffer): Promise<number> =>
      new Promise((resolve) => {
        const deadline = Date.now() + (m.responseStream ? 300 : CALL_TIMEOUT_MS);
        if (m.requestStream || m.responseStream) {
          const call = m.requestStream
            ? client.makeBidiStreamRequest(m.path, identity, identity, metadata(), { deadline })
            : client.makeServerStreamRequest(m.path, identity, identity, body, metadata(), { deadline });
          call.on("data", () => {});
          call.on("error", (e: grpc.ServiceError) => resolve(e.code));
          call.on("status", (s: grpc.StatusObject) => resolve(s.code));
          if (m.requestStream) {
            (call as grpc.ClientDuplexStream<Buffer, Buffer>).write(body);
            (call as grpc.ClientDuplexStream<Buffer, Buffer>).end();
          }
          return;
        }
        client.makeUnaryRequest(m.path, identity, identity, body, metadata(), { deadline }, (err) => resolve(err ? err.code : 0));
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
          const code = (await send(m, j.body)) as Code | 0;
          tally.add(rpc, "grpc-js", codeName(code));
          if (code !== 0 && (j.wellFormed ? NEVER_FOR_WELL_FORMED : NEVER).has(code)) {
            tally.fail({
              rpc,
              client: "grpc-js",
              kind: j.wellFormed ? "well-formed" : "malformed",
              answer: codeName(code),
              request: j.what,
            });
          }
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
