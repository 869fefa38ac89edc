import type { Clock } from "../ports/clock.js";

type Waiter = () => void;

/**
 * Long-poll waiting: GetJob calls wait for their job to change, AcquireShards calls for
 * shards to become available. Wake-ups come from the core's `job-changed` and
 * `shards-available` effects, once their records are durable.
 */
export class Waiters {
  readonly #clock: Clock;
  readonly #jobs = new Map<string, Set<Waiter>>();
  readonly #workers = new Set<Waiter>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Resolves when the job changes, `ms` passes, or the call is aborted. */
  waitForJob(jobId: string, ms: number, signal: AbortSignal): Promise<void> {
    return this.#wait(
      (w) => {
        const set = this.#jobs.get(jobId) ?? new Set<Waiter>();
        this.#jobs.set(jobId, set);
        set.add(w);
        return () => {
          set.delete(w);
          if (set.size === 0 && this.#jobs.get(jobId) === set) this.#jobs.delete(jobId);
        };
      },
      ms,
      signal,
    );
  }

  /** Resolves when shards may be available, `ms` passes, or the call is aborted. */
  waitForShards(ms: number, signal: AbortSignal): Promise<void> {
    return this.#wait(
      (w) => {
        this.#workers.add(w);
        return () => this.#workers.delete(w);
      },
      ms,
      signal,
    );
  }

  /** Wakes the calls waiting for one job. */
  wakeJob(jobId: string): void {
    const set = this.#jobs.get(jobId);
    if (set) {
      this.#jobs.delete(jobId);
      for (const w of set) w();
    }
  }

  /** Wakes every AcquireShards call waiting. */
  wakeWorkers(): void {
    const ws = [...this.#workers];
    this.#workers.clear();
    for (const w of ws) w();
  }

  /** Wakes every waiting call (on close). */
  wakeAll(): void {
    this.wakeWorkers();
    for (const set of this.#jobs.values()) for (const w of set) w();
  }

  /** Waits until `register` is woken, `ms` passes, or the call is aborted. */
  #wait(register: (w: Waiter) => () => void, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let unregister = () => {};
      let cancelTimer = () => {};
      const done = () => {
        cancelTimer();
        signal.removeEventListener("abort", done);
        unregister();
        resolve();
      };
      cancelTimer = this.#clock.setTimer(ms, done);
      signal.addEventListener("abort", done, { once: true });
      unregister = register(done);
    });
  }
}
