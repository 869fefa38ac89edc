import type { Clock } from "./clock.js";

interface VirtualTimer {
  readonly atMs: number;
  /** Order of arming: timers due at the same time fire in the order they were set. */
  readonly seq: number;
  readonly fn: () => void;
}

/**
 * A manual clock for tests and the simulation: time stands still until {@link advance}
 * moves it, firing due timers one at a time in time order (ties in the order they were
 * set), with the clock reading each timer's own due time while it runs. Deterministic:
 * the same calls give the same firing order.
 */
export class VirtualClock implements Clock {
  #nowMs: number;
  #seq = 0;
  readonly #timers: VirtualTimer[] = [];

  /** @param startMs the time the clock reads before the first {@link advance}, in ms. */
  constructor(startMs = 0) {
    this.#nowMs = startMs;
  }

  nowMs(): number {
    return this.#nowMs;
  }

  setTimer(ms: number, fn: () => void): () => void {
    const timer: VirtualTimer = { atMs: this.#nowMs + Math.max(0, ms), seq: this.#seq++, fn };
    this.#timers.push(timer);
    return () => {
      const i = this.#timers.indexOf(timer);
      if (i >= 0) this.#timers.splice(i, 1);
    };
  }

  /**
   * Moves the clock `ms` forward (0 fires what is due now, such as 0 ms timers), firing
   * every timer due on the way, including timers that fired timers set. Promise
   * continuations of the fired callbacks run after this returns.
   */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`advance(${ms}): time only moves forward`);
    const targetMs = this.#nowMs + ms;
    for (;;) {
      const next = this.#next();
      if (next === undefined || next.atMs > targetMs) break;
      this.#timers.splice(this.#timers.indexOf(next), 1);
      this.#nowMs = next.atMs;
      next.fn();
    }
    this.#nowMs = targetMs;
  }

  /** Timers armed and not yet fired or cancelled. */
  get pendingTimers(): number {
    return this.#timers.length;
  }

  /** When the next timer is due, in ms, or undefined when none is armed. */
  nextTimerAtMs(): number | undefined {
    return this.#next()?.atMs;
  }

  #next(): VirtualTimer | undefined {
    let best: VirtualTimer | undefined;
    for (const t of this.#timers) {
      if (best === undefined || t.atMs < best.atMs || (t.atMs === best.atMs && t.seq < best.seq)) best = t;
    }
    return best;
  }
}
