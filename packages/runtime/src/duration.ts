/**
 * Durations on command lines: a whole number with a unit, as in `500ms`, `5s`, `30m`,
 * `12h` or `7d`. Shared by the coordinator's flags (`--retention`) and the `dce` CLI's
 * (`dce submit --retention`).
 *
 * @module
 */

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses a duration such as `5s`, `30m` or `7d` into milliseconds.
 * @param text a whole number followed by one of the units `ms`, `s`, `m`, `h`, `d`.
 * @returns the duration in ms, or undefined when `text` is not such a duration (or
 *   is longer than Number.MAX_SAFE_INTEGER ms).
 */
export function parseDurationMs(text: string): number | undefined {
  const m = /^(\d{1,16})(ms|s|m|h|d)$/.exec(text.trim());
  if (!m) return undefined;
  const ms = Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** Writes a duration in ms with the largest unit that divides it (`604800000` → `7d`). */
export function formatDurationMs(ms: number): string {
  for (const unit of ["d", "h", "m", "s"] as const) {
    const size = UNIT_MS[unit] as number;
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
