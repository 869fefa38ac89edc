import type { CoreEvent, OutcomeMap, StepResult } from "@dce/core";

// The hooks a coordinator offers its observers (metrics, dashboard, logs). They live
// here, not in coordinator.ts, so the observability modules can name them without
// importing the coordinator (which imports them back through auth.ts and ops-http.ts).

/** Called after every core step, with the event and what the core made of it; see `Coordinator.observe`. */
export type StepObserver = (event: CoreEvent, result: StepResult<OutcomeMap[CoreEvent["type"]]>) => void;

/** One verified result, as reported to `Coordinator.observeVerification` observers. */
export interface VerificationEvent {
  readonly jobId: string;
  readonly shardIndex: number;
  readonly workerId: string;
  /** passed: every row checked and right; unverifiable: right where it could be checked, some rows could not be; rejected; error: the check could not run. */
  readonly outcome: "passed" | "unverifiable" | "rejected" | "error";
  /** Wall time of the check, in ms. */
  readonly ms: number;
}

/** Called after every result check; see `Coordinator.observeVerification`. */
export type VerificationObserver = (v: VerificationEvent) => void;
