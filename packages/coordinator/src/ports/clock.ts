/**
 * Time as the coordinator shell sees it. Every reading of the time and every timer of
 * the shell goes through a clock, so the same shell runs on the wall clock in the
 * `coordinator` bin and on a {@link VirtualClock} in tests and the simulation.
 */
export interface Clock {
  /** The current time, in ms since the epoch (or since the start of a virtual run). */
  nowMs(): number;
  /**
   * Calls `fn` once, `ms` from now (0: as soon as the current work is done, after
   * pending replies are sent). Timers never keep a process alive on their own.
   * @returns a function that cancels the timer; calling it after the timer fired does nothing.
   */
  setTimer(ms: number, fn: () => void): () => void;
}

/** The wall clock: `Date.now()` and Node timers (unref'd; a 0 ms timer is a `setImmediate`). */
export const systemClock: Clock = {
  nowMs: () => Date.now(),
  setTimer(ms, fn) {
    if (ms <= 0) {
      const handle = setImmediate(fn);
      handle.unref();
      return () => clearImmediate(handle);
    }
    const handle = setTimeout(fn, ms);
    handle.unref();
    return () => clearTimeout(handle);
  },
};

/**
 * Calls `fn` every `intervalMs` on `clock` until the returned function is called. The
 * next call is armed before `fn` runs, so a throwing `fn` does not stop the series.
 * @returns a function that stops the series.
 */
export function every(clock: Clock, intervalMs: number, fn: () => void): () => void {
  let stopped = false;
  let cancel = () => {};
  const arm = () => {
    cancel = clock.setTimer(intervalMs, () => {
      if (stopped) return;
      arm();
      fn();
    });
  };
  arm();
  return () => {
    stopped = true;
    cancel();
  };
}
