/**
 * Thrown (and returned by `Worker.wait`) when the coordinator stayed unreachable for
 * longer than `retryBudgetMs`.
 */
export class RetryBudgetExceededError extends Error {
  override readonly name = "RetryBudgetExceededError";
  /** The budget that ran out, in milliseconds. */
  readonly retryBudgetMs: number;
  constructor(retryBudgetMs: number, cause: unknown) {
    super(
      `coordinator unreachable for longer than the retry budget of ${retryBudgetMs} ms: ${
        cause instanceof Error ? cause.message : String(cause)
      }`,
      { cause },
    );
    this.retryBudgetMs = retryBudgetMs;
  }
}

/** Why a shard's work was stopped before it finished (lease ended, drain, shutdown). */
export class ShardStopped extends Error {
  override readonly name = "ShardStopped";
}

/** The shard's inputs do not fit its task (bad shape, wrong blob size): report, don't retry. */
export class ShardDataError extends Error {
  override readonly name = "ShardDataError";
}

/** The message of any thrown value. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** `e` as an Error; with `context`, a new Error saying what failed, with `e` as its cause. */
export function toError(e: unknown, context?: string): Error {
  if (e instanceof Error && context === undefined) return e;
  return new Error(context === undefined ? String(e) : `${context}: ${errorMessage(e)}`, { cause: e });
}
