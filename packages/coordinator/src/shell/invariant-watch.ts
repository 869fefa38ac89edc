import { type CoreState, checkInvariants } from "@dce/core";
import type { Logger } from "pino";

/**
 * The run-time check of the core's invariants, at most once per interval. Any line it
 * logs is a bug in the core (the invariants are pinned by core property tests).
 */
export class InvariantWatch {
  readonly #intervalMs: number;
  readonly #log: Logger;
  #lastCheckMs = 0;

  /** @param intervalMs least time between checks, in ms; 0 never checks. */
  constructor(intervalMs: number, log: Logger) {
    this.#intervalMs = intervalMs;
    this.#log = log;
  }

  /** Checks `state` if the interval has passed since the last check at `nowMs`. */
  maybeCheck(state: Readonly<CoreState>, nowMs: number): void {
    if (this.#intervalMs <= 0 || nowMs - this.#lastCheckMs < this.#intervalMs) return;
    this.#lastCheckMs = nowMs;
    // Loud on purpose: see above.
    for (const msg of checkInvariants(state)) this.#log.fatal({ invariant: msg }, "INVARIANT VIOLATED");
  }
}
