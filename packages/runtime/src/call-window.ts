/**
 * A bound on the calls a blob-transfer client has in flight at once, over all its reads
 * (or all its uploads) together.
 *
 * One read keeps a few ReadBlob calls in flight so that each call's round trip overlaps
 * the others' transfer. A worker, though, fetches several panels at once, and each of
 * their windows on top of the others once put 7 × 4 answers of 4 MiB on one HTTP/2
 * session: past its memory limit, Node resets every stream the coordinator then answers
 * (NGHTTP2_ENHANCE_YOUR_CALM), the calls are retried after a back-off, and at n=4096 a job
 * took a third longer. Sharing one window fixes the bytes in flight per connection, and
 * answering waiters in the order they asked lets the panel asked for first arrive first.
 *
 * @packageDocumentation
 */

/** At most `size` calls at once; the rest wait, first come first served. */
export class CallWindow {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(readonly size: number) {
    if (!Number.isSafeInteger(size) || size < 1) throw new RangeError(`a call window holds at least 1 call, not ${size}`);
    this.#free = size;
  }

  /** Calls in flight now. */
  get inFlight(): number {
    return this.size - this.#free;
  }

  /** Runs `call` once a place is free, holding it until the call settles. */
  async run<T>(call: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await call();
    } finally {
      // The place passes straight to the next waiter, so a newcomer cannot overtake it.
      const next = this.#waiting.shift();
      if (next !== undefined) next();
      else this.#free++;
    }
  }
}
