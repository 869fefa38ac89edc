import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor, type UnaryResponse } from "@connectrpc/connect";
import { CompleteShardsResponseSchema, ErrorInfoSchema, type ErrorReason, ShardOutcomeSchema } from "@dce/proto";

/** A method's local name on the coordinator's services, e.g. `acquireShards`. */
export type MethodName = string;

interface Countdown {
  readonly code: Code;
  remaining: number;
}

/** A canned answer for one result of a CompleteShards call, instead of the coordinator's. */
export interface ResultAnswer {
  readonly code: Code;
  readonly message: string;
  /** The ErrorInfo reason the outcome carries, as the coordinator's refusals do; none by default. */
  readonly reason?: ErrorReason;
}

/** The lease of one result in a CompleteShards request. */
interface LeaseOfResult {
  readonly jobId: string;
  readonly shardIndex: number;
  readonly epoch: bigint;
}

/**
 * Faults for an in-memory coordinator's transport, applied by one client interceptor
 * ({@link FaultInjector.networkInterceptor} outside the call log, the rest inside it):
 * calls that fail on the network (the coordinator never sees them), calls the coordinator
 * answers with an error, delayed calls, replies lost after the coordinator acted, replies
 * rewritten, and canned answers for chosen results of a CompleteShards call (those results
 * never reach the coordinator). Every fault is armed by the test and counts down.
 */
export class FaultInjector {
  readonly #network = new Map<MethodName, Countdown>();
  readonly #coordinator = new Map<MethodName, Countdown>();
  readonly #dropped = new Map<MethodName, Countdown>();
  readonly #delays = new Map<MethodName, number>();
  readonly #rewrites = new Map<MethodName, ((reply: Record<string, unknown>) => void)[]>();
  readonly #before = new Map<MethodName, (request: Record<string, unknown>) => void | Promise<void>>();
  #answerResult: ((lease: LeaseOfResult) => ResultAnswer | undefined) | undefined;

  /**
   * The next `times` calls of `method` fail on the caller's side as a reset connection
   * does in connect-node: `code` (ABORTED for ECONNRESET), with the Node.js error as
   * `cause`. The coordinator never sees them, and the call log does not record them.
   */
  failOnNetwork(method: MethodName, code: Code, times = 1): void {
    this.#network.set(method, { code, remaining: times });
  }

  /** The next `times` calls of `method` are answered `code` ("injected <Code>") without running. */
  failNext(method: MethodName, code: Code, times = 1): void {
    this.#coordinator.set(method, { code, remaining: times });
  }

  /** The next `times` calls of `method` run on the coordinator, but the caller gets `code` instead of the reply. */
  dropReply(method: MethodName, code: Code = Code.Unavailable, times = 1): void {
    this.#dropped.set(method, { code, remaining: times });
  }

  /** Every call of `method` waits `ms` before it reaches the coordinator (0 removes the delay). */
  delay(method: MethodName, ms: number): void {
    if (ms > 0) this.#delays.set(method, ms);
    else this.#delays.delete(method);
  }

  /**
   * Runs `fn` with the request just before each call of `method` reaches the coordinator,
   * which the call reaches once a promise `fn` returns settles (undefined removes it). `fn`
   * may edit the request; the call log keeps it as sent.
   */
  beforeCall(method: MethodName, fn: ((request: Record<string, unknown>) => void | Promise<void>) | undefined): void {
    if (fn) this.#before.set(method, fn);
    else this.#before.delete(method);
  }

  /**
   * Edits every reply of `method` before the caller gets it (after earlier edits).
   * @returns a function that removes this edit.
   */
  rewriteReply(method: MethodName, fn: (reply: Record<string, unknown>) => void): () => void {
    const list = this.#rewrites.get(method) ?? [];
    list.push(fn);
    this.#rewrites.set(method, list);
    return () => {
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    };
  }

  /**
   * Answers chosen results of CompleteShards calls with `answer(lease)` (undefined: the
   * coordinator decides). An answered result is taken out of the request, so the
   * coordinator never sees it, as when it refused it.
   */
  answerResults(answer: ((lease: LeaseOfResult) => ResultAnswer | undefined) | undefined): void {
    this.#answerResult = answer;
  }

  /** The interceptor for network faults; goes outside the call log. */
  networkInterceptor(): Interceptor {
    return (next) => async (req) => {
      if (take(this.#network, req.method.localName)) {
        const code = (this.#network.get(req.method.localName) as Countdown).code;
        const reset = Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET", syscall: "read" });
        const err = new ConnectError(reset.message, code);
        err.cause = reset;
        throw err;
      }
      return next(req);
    };
  }

  /** The interceptor for everything else; goes inside the call log. */
  coordinatorInterceptor(): Interceptor {
    return (next) => async (req) => {
      const method = req.method.localName;
      if (take(this.#coordinator, method)) {
        const code = (this.#coordinator.get(method) as Countdown).code;
        throw new ConnectError(`injected ${Code[code]}`, code);
      }
      const ms = this.#delays.get(method);
      if (ms !== undefined) await new Promise((resolve) => setTimeout(resolve, ms));
      if (!req.stream) await this.#before.get(method)?.(req.message as unknown as Record<string, unknown>);
      if (req.stream) return next(req);
      const answered =
        method === "completeShards" && this.#answerResult
          ? this.#takeAnswered(req.message as unknown as CompleteRequest)
          : undefined;
      if (answered?.kept.length === 0) {
        // No result left for the coordinator: answered without a call.
        const message = create(CompleteShardsResponseSchema);
        mergeOutcomes(message, answered.answered);
        const res: UnaryResponse = {
          stream: false,
          service: req.service,
          method: req.method,
          header: new Headers(),
          trailer: new Headers(),
          message,
        };
        return res;
      }
      // The call log keeps the request as sent: the coordinator gets a copy without the answered results.
      const forwarded =
        answered === undefined ? req : { ...req, message: { ...req.message, results: answered.kept } as typeof req.message };
      const res = await next(forwarded);
      if (res.stream) return res;
      if (take(this.#dropped, method)) {
        const code = (this.#dropped.get(method) as Countdown).code;
        throw new ConnectError(`reply lost (injected ${Code[code]})`, code);
      }
      if (answered !== undefined) mergeOutcomes(res.message as unknown as CompleteReply, answered.answered);
      for (const edit of this.#rewrites.get(method) ?? []) edit(res.message as unknown as Record<string, unknown>);
      return res;
    };
  }

  /** Splits a CompleteShards request into the results answered here and those kept for the coordinator. */
  #takeAnswered(req: CompleteRequest): { answered: Answered[]; kept: CompleteRequest["results"] } | undefined {
    const answered: Answered[] = [];
    const kept: CompleteRequest["results"] = [];
    req.results.forEach((r, index) => {
      const answer = r.lease ? this.#answerResult?.(r.lease) : undefined;
      if (answer === undefined) kept.push(r);
      else answered.push({ index, lease: r.lease, ...answer });
    });
    return answered.length === 0 ? undefined : { answered, kept };
  }
}

interface CompleteRequest {
  results: { lease?: LeaseOfResult }[];
}
interface CompleteReply {
  outcomes: unknown[];
}
interface Answered extends ResultAnswer {
  readonly index: number;
  readonly lease: LeaseOfResult | undefined;
}

/** Puts the canned outcomes back at the positions their results had in the request. */
function mergeOutcomes(reply: CompleteReply, answered: Answered[]): void {
  for (const a of answered) {
    const lease = a.lease === undefined ? undefined : { ...a.lease };
    const error = a.reason === undefined ? undefined : create(ErrorInfoSchema, { reason: a.reason });
    reply.outcomes.splice(
      a.index,
      0,
      create(ShardOutcomeSchema, { ...(lease ? { lease } : {}), code: a.code, message: a.message, ...(error ? { error } : {}) }),
    );
  }
}

/** True (and one fewer left) when a countdown for `method` is armed. */
function take(faults: Map<MethodName, Countdown>, method: MethodName): boolean {
  const f = faults.get(method);
  if (f === undefined || f.remaining <= 0) return false;
  f.remaining--;
  return true;
}
