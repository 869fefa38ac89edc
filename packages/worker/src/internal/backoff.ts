/** First retry delay, in milliseconds. */
export const backoffBaseMs = 100;
/** Longest retry delay, in milliseconds. */
export const backoffCapMs = 5_000;

/**
 * Delay before retry number `attempt` (0 for the first retry): exponential from
 * {@link backoffBaseMs}, capped at {@link backoffCapMs}, with "equal jitter" (a
 * uniformly random point in the upper half), so that many workers losing the same
 * coordinator do not reconnect in lockstep yet never retry in a hot loop.
 *
 * @param random - Uniform in [0, 1); injected so tests are deterministic.
 */
export function backoffDelayMs(attempt: number, random: () => number): number {
  const ceilingMs = Math.min(backoffCapMs, backoffBaseMs * 2 ** Math.min(attempt, 30));
  return ceilingMs / 2 + random() * (ceilingMs / 2);
}
