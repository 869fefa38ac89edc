import { isMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  AcquireShardsResponseSchema,
  GetJobResponseSchema,
  ReadBlobResponseSchema,
  SubmitJobRequestSchema,
  UploadChunkRequestSchema,
} from "@dce/proto";
import { Counter, Histogram, type Registry } from "prom-client";

// The metrics a Connect interceptor records for every call: RPCs started, finished and
// timed by service, method and code, and the matrix bytes that move in and out.

/** Lower-case snake name of a Connect code (`not_found`), or `ok` for 0, as used in the `code` label. */
export function codeLabel(code: Code | 0): string {
  if (code === 0) return "ok";
  const name = Code[code];
  return name ? name.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase() : String(code);
}

// Long-polls (GetJob, AcquireShards) hold a call up to 30 s, so the buckets reach past it.
const RPC_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * Registers, in `registers`, the RPC and blob-byte metrics, and returns the server
 * interceptor that records them (see `CoordinatorMetrics.interceptor`).
 */
export function createRpcMetrics(registers: Registry[]): Interceptor {
  const rpcStarted = new Counter({
    name: "dce_rpc_started_total",
    help: "RPCs started, by service and method.",
    labelNames: ["service", "method"] as const,
    registers,
  });
  const rpcHandled = new Counter({
    name: "dce_rpc_handled_total",
    help: "RPCs finished, by service, method and code (ok, not_found, aborted...).",
    labelNames: ["service", "method", "code"] as const,
    registers,
  });
  const rpcSeconds = new Histogram({
    name: "dce_rpc_handling_seconds",
    help: "RPC handling time in seconds, by service, method and code (long-polls included).",
    labelNames: ["service", "method", "code"] as const,
    buckets: RPC_BUCKETS_S,
    registers,
  });
  const blobBytes = new Counter({
    name: "dce_blob_bytes_total",
    help: "Matrix data bytes moved: in = UploadChunk data and matrices inline in SubmitJob; out = ReadBlob data, inputs inline in grants and C inline in GetJob.",
    labelNames: ["direction"] as const,
    registers,
  });
  blobBytes.inc({ direction: "in" }, 0);
  blobBytes.inc({ direction: "out" }, 0);
  return (next) => async (req) => {
    const service = req.service.typeName;
    const method = req.method.name;
    rpcStarted.inc({ service, method });
    const startedAt = performance.now();
    let finished = false;
    const finish = (code: string) => {
      if (finished) return;
      finished = true;
      rpcHandled.inc({ service, method, code });
      rpcSeconds.observe({ service, method, code }, (performance.now() - startedAt) / 1000);
    };
    // A client that goes away mid-call surfaces as a transport error, not a ConnectError.
    const codeOf = (e: unknown) =>
      !(e instanceof ConnectError) && req.signal.aborted ? "canceled" : codeLabel(ConnectError.from(e).code);
    if (!req.stream && isMessage(req.message, UploadChunkRequestSchema)) {
      blobBytes.inc({ direction: "in" }, req.message.data.byteLength);
    }
    if (!req.stream && isMessage(req.message, SubmitJobRequestSchema)) {
      const m = req.message.matmul;
      const inline = (m?.a?.inlineData.byteLength ?? 0) + (m?.b?.inlineData.byteLength ?? 0);
      if (inline > 0) blobBytes.inc({ direction: "in" }, inline);
    }
    try {
      const res = await next(req);
      if (!res.stream) {
        if (isMessage(res.message, ReadBlobResponseSchema)) blobBytes.inc({ direction: "out" }, res.message.data.byteLength);
        else if (isMessage(res.message, GetJobResponseSchema) && res.message.result !== undefined) {
          blobBytes.inc({ direction: "out" }, res.message.result.inlineData.byteLength);
        } else if (isMessage(res.message, AcquireShardsResponseSchema)) {
          let inline = 0;
          for (const l of res.message.leases)
            inline += (l.matmul?.a?.inlineData.byteLength ?? 0) + (l.matmul?.b?.inlineData.byteLength ?? 0);
          if (inline > 0) blobBytes.inc({ direction: "out" }, inline);
        }
        finish("ok");
        return res;
      }
      // A streaming call ends when its last message is sent; time it until then.
      const messages = res.message;
      async function* timed() {
        try {
          yield* messages;
          finish("ok");
        } catch (e) {
          finish(codeOf(e));
          throw e;
        } finally {
          finish("canceled");
        }
      }
      return { ...res, message: timed() };
    } catch (e) {
      finish(codeOf(e));
      throw e;
    }
  };
}
