import { Writable } from "node:stream";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import { ErrorInfoSchema, ErrorReason } from "@dce/proto";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createErrorBoundary, MAX_ERROR_MESSAGE_CHARS, safeErrorMessage } from "./error-boundary.js";
import { dceError, FALLBACK_REASON_OF_CODE } from "./errors.js";
import { Health, HealthCheckResponseSchema } from "./gen/grpc/health/v1/health_pb.js";

/** A 64-unit cut of this id leaves the first half of the rocket: a lone surrogate. */
const SPLIT_ID = `${"a".repeat(63)}\u{1f680}`.slice(0, 64);

function isWellFormed(s: string): boolean {
  try {
    encodeURIComponent(s);
    return true;
  } catch {
    return false;
  }
}

/** A Health service whose Check throws `thrown` and whose Watch sends one status, then throws it. */
function serve(thrown: () => unknown, inner: Interceptor[] = []) {
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
  const transport = createRouterTransport(
    (r) =>
      r.service(Health, {
        check() {
          throw thrown();
        },
        list() {
          return {};
        },
        async *watch() {
          yield create(HealthCheckResponseSchema, { status: 1 });
          throw thrown();
        },
      }),
    { router: { interceptors: [createErrorBoundary(logger), ...inner] } },
  );
  return { client: createClient(Health, transport), logged: () => logged };
}

async function errorOf(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("the call succeeded");
}

describe("safeErrorMessage", () => {
  it("makes a message well-formed, escapes control characters and bounds it by code point", () => {
    expect(isWellFormed(SPLIT_ID)).toBe(false);
    expect(safeErrorMessage(`worker ${SPLIT_ID} not found`)).toBe(`worker ${"a".repeat(63)}\ufffd not found`);
    expect(safeErrorMessage("line\nbreak\u001b[0m")).toBe("line\\nbreak\\u001b[0m");
    const long = safeErrorMessage("\u{1f680}".repeat(5000));
    expect([...long]).toHaveLength(MAX_ERROR_MESSAGE_CHARS);
    expect(long.endsWith("…")).toBe(true);
  });
});

describe("createErrorBoundary", () => {
  it("sends a handler's message well-formed and keeps its code and details", async () => {
    const detail = create(HealthCheckResponseSchema, { status: 2 });
    const { client } = serve(
      () =>
        new ConnectError(`worker ${SPLIT_ID} is not registered`, Code.NotFound, undefined, [
          { desc: HealthCheckResponseSchema, value: detail },
        ]),
    );
    const e = await errorOf(client.check({}));
    expect(e.code).toBe(Code.NotFound);
    expect(isWellFormed(e.rawMessage)).toBe(true);
    expect(e.rawMessage).toBe(`worker ${"a".repeat(63)}\ufffd is not registered`);
    expect(e.findDetails(HealthCheckResponseSchema)).toEqual([expect.objectContaining({ status: 2 })]);
  });

  it("bounds a long message by code point", async () => {
    const { client } = serve(() => new ConnectError(`x${"漢\u{1f680}".repeat(3000)}`, Code.InvalidArgument));
    const e = await errorOf(client.check({}));
    expect(e.code).toBe(Code.InvalidArgument);
    expect([...e.rawMessage].length).toBeLessThanOrEqual(MAX_ERROR_MESSAGE_CHARS);
    expect(isWellFormed(e.rawMessage)).toBe(true);
  });

  it("sees the errors of the interceptors inside it", async () => {
    const refuse: Interceptor = () => () => {
      throw new ConnectError(`token \u001b[31m${SPLIT_ID}`, Code.Unauthenticated);
    };
    const { client } = serve(() => new Error("not reached"), [refuse]);
    const e = await errorOf(client.check({}));
    expect(e.code).toBe(Code.Unauthenticated);
    expect(e.rawMessage).toBe(`token \\u001b[31m${"a".repeat(63)}\ufffd`);
  });

  it("answers INTERNAL with only the INTERNAL ErrorInfo for anything that is not a ConnectError, and logs it", async () => {
    const { client, logged } = serve(() => new TypeError(`secret ${SPLIT_ID}`));
    const e = await errorOf(client.check({}));
    expect(e.code).toBe(Code.Internal);
    expect(e.rawMessage).toBe("internal error");
    expect(e.details).toHaveLength(1);
    expect(e.findDetails(ErrorInfoSchema)).toEqual([expect.objectContaining({ reason: ErrorReason.INTERNAL, metadata: {} })]);
    expect(logged()).toContain("secret");
  });

  it("gives an error without an ErrorInfo the fallback reason of its code, and keeps one that has it", async () => {
    const bare = await errorOf(serve(() => new ConnectError("no such thing", Code.NotFound)).client.check({}));
    expect(bare.findDetails(ErrorInfoSchema)).toEqual([expect.objectContaining({ reason: ErrorReason.NOT_FOUND })]);
    for (const code of [Code.InvalidArgument, Code.Unavailable, Code.DeadlineExceeded, Code.Unknown]) {
      const e = await errorOf(serve(() => new ConnectError("x", code)).client.check({}));
      expect(e.findDetails(ErrorInfoSchema).map((i) => i.reason)).toEqual([FALLBACK_REASON_OF_CODE[code]]);
    }
    const typed = await errorOf(
      serve(() =>
        dceError(Code.NotFound, ErrorReason.JOB_NOT_FOUND, `job ${SPLIT_ID} not found`, { job_id: SPLIT_ID }),
      ).client.check({}),
    );
    // Made safe (a new error) and still exactly one ErrorInfo, the original.
    expect(typed.rawMessage).toBe(`job ${"a".repeat(63)}\ufffd not found`);
    expect(typed.findDetails(ErrorInfoSchema)).toEqual([
      expect.objectContaining({ reason: ErrorReason.JOB_NOT_FOUND, metadata: { job_id: `${"a".repeat(63)}\ufffd` } }),
    ]);
  });

  it("makes an error thrown in the middle of a streaming response safe too", async () => {
    const { client } = serve(() => new ConnectError(`gone ${SPLIT_ID}`, Code.Unavailable));
    const seen: number[] = [];
    const e = await errorOf(
      (async () => {
        for await (const m of client.watch({})) seen.push(m.status);
      })(),
    );
    expect(seen).toEqual([1]);
    expect(e.code).toBe(Code.Unavailable);
    expect(e.rawMessage).toBe(`gone ${"a".repeat(63)}\ufffd`);
  });
});
