import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { RetryBudgetExceededError } from "./errors.js";
import type { WorkerLogger } from "./log-scope.js";
import type { ComputePool } from "./pool.js";
import { Worker } from "./worker.js";

// What the worker retries when it cannot talk to the coordinator: a connection that
// fails is retried; a certificate that is not trusted is not (issue 17, item 4).

const idlePool: ComputePool = {
  size: 1,
  run: () => Promise.reject(new Error("no shard expected")),
  close: () => Promise.resolve(),
};

/** A transport whose every call fails the way connect-node reports a local error: `cause` is Node's error. */
function failingTransport(code: Code, nodeCode: string): { transport: Transport; calls: () => number } {
  let calls = 0;
  const fail = async (): Promise<never> => {
    calls++;
    const cause = Object.assign(new Error(`${nodeCode} from the socket`), { code: nodeCode });
    throw new ConnectError(cause.message, code, undefined, undefined, cause);
  };
  return { transport: { unary: fail, stream: fail }, calls: () => calls };
}

function captureLogger(): WorkerLogger & { warnings: string[] } {
  const warnings: string[] = [];
  const none = () => {};
  return { warnings, debug: none, info: none, error: none, warn: (_fields, msg) => warnings.push(msg) };
}

const workers: Worker[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => w.close()));
});

function newWorker(transport: Transport, logger: WorkerLogger): Worker {
  const worker = new Worker({
    coordinatorUrl: "https://coordinator.test:7070",
    transport,
    pool: idlePool,
    retryBudgetMs: 400,
    random: () => 0.5,
    logger,
  });
  workers.push(worker);
  return worker;
}

describe("registration against a coordinator the worker cannot talk to", () => {
  it.each([
    ["SELF_SIGNED_CERT_IN_CHAIN"],
    ["UNABLE_TO_VERIFY_LEAF_SIGNATURE"],
    ["CERT_HAS_EXPIRED"],
    ["ERR_TLS_CERT_ALTNAME_INVALID"],
    ["ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED"],
  ])("a TLS failure of trust (%s) stops it after one try, without a retry warning", async (nodeCode) => {
    const { transport, calls } = failingTransport(Code.Internal, nodeCode);
    const logger = captureLogger();
    const worker = newWorker(transport, logger);
    const error = await worker.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConnectError);
    expect(error).not.toBeInstanceOf(RetryBudgetExceededError);
    expect(calls()).toBe(1);
    expect(logger.warnings).toEqual([]);
  });

  it.each([
    ["Unavailable", "ECONNREFUSED"],
    ["Internal", "ECONNRESET"],
    ["Internal", "ERR_SSL_WRONG_VERSION_NUMBER"],
  ] as const)("%s caused by %s is retried until the retry budget runs out", async (code, nodeCode) => {
    const { transport, calls } = failingTransport(Code[code], nodeCode);
    const logger = captureLogger();
    const worker = newWorker(transport, logger);
    await expect(worker.start()).rejects.toBeInstanceOf(RetryBudgetExceededError);
    expect(calls()).toBeGreaterThan(1);
    expect(logger.warnings).toContain("coordinator call failed; retrying");
  });
});
