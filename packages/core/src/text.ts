/**
 * Text that came from a request and goes back out in a message, a log or the journal.
 *
 * JavaScript strings are UTF-16: `s.slice(0, n)` counts code units and can cut a
 * surrogate pair in two, leaving a lone surrogate. That is no longer valid Unicode:
 * it cannot be encoded as UTF-8, and gRPC's `grpc-message` trailer (percent-encoded
 * with `encodeURIComponent`, which throws on it) cannot carry it. These helpers count
 * code points instead and always return well-formed strings.
 *
 * @module
 */

/** Marks text that was cut. */
export const ELLIPSIS = "…";

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * `s` with each lone surrogate replaced by U+FFFD, as `String.prototype.toWellFormed`
 * does (ES2024; the core targets ES2022). A well-formed string is returned as is.
 */
export function toWellFormed(s: string): string {
  return s.replace(LONE_SURROGATE, "\ufffd");
}

/**
 * `s` cut to at most `maxCodePoints` code points, never inside a surrogate pair; when
 * something is cut, the last of those code points is {@link ELLIPSIS}. The result is
 * well-formed (see {@link toWellFormed}). For text that is stored and shown later (a
 * cancel reason, a shard's error text).
 * @throws RangeError when `maxCodePoints` is not a non-negative integer (a caller bug).
 */
export function clipCodePoints(s: string, maxCodePoints: number): string {
  checkMax(maxCodePoints);
  // At most maxCodePoints UTF-16 units is at most that many code points: nothing to cut.
  if (s.length <= maxCodePoints) return toWellFormed(s);
  return walk(s, maxCodePoints, (ch) => ch);
}

/**
 * Characters that must not reach a message verbatim: control characters (C0, DEL, C1),
 * line and paragraph separators, and the bidirectional overrides and isolates that can
 * make a log line read differently from what it holds.
 */
const UNSAFE = /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
const SHORT_ESCAPES: Readonly<Record<string, string>> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/** The printable form of one character: itself, or an escape (`\n`, `\u001b`) for an {@link UNSAFE} one. */
function printable(ch: string): string {
  if (!UNSAFE.test(ch)) return ch;
  return SHORT_ESCAPES[ch] ?? `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

/**
 * Client-supplied text as an error message quotes it: well-formed, with control and
 * other {@link UNSAFE} characters escaped (`\n`, `\u001b`), and cut to at most
 * `maxCodePoints` code points as {@link clipCodePoints} cuts (an escape counts as its
 * printed length and is never cut in two). Adds no quotation marks of its own.
 *
 * Idempotent: quoting quoted text changes nothing (backslashes are not escaped, and a
 * cut result fits its own bound), so a message built from quoted parts may pass
 * through it again as a whole.
 * @throws RangeError when `maxCodePoints` is not a non-negative integer (a caller bug).
 */
export function quote(s: string, maxCodePoints: number): string {
  checkMax(maxCodePoints);
  if (s.length <= maxCodePoints && !UNSAFE.test(s)) return toWellFormed(s);
  return walk(s, maxCodePoints, printable);
}

/**
 * Maps each code point of `s` through `print` (lone surrogates become U+FFFD first)
 * and joins the results, cut as {@link clipCodePoints} describes.
 */
function walk(s: string, maxCodePoints: number, print: (ch: string) => string): string {
  if (maxCodePoints === 0) return "";
  let out = "";
  let n = 0;
  // UTF-16 length of `out` while it still leaves room for the ellipsis.
  let cutAt = 0;
  for (const raw of s) {
    const ch = raw.length === 1 && raw >= "\ud800" && raw <= "\udfff" ? "\ufffd" : raw;
    const piece = print(ch);
    // A piece is one code point per UTF-16 unit, except an astral character left as is.
    const width = piece === ch && ch.length === 2 ? 1 : piece.length;
    if (n + width > maxCodePoints) return out.slice(0, cutAt) + ELLIPSIS;
    out += piece;
    n += width;
    if (n <= maxCodePoints - 1) cutAt = out.length;
  }
  return out;
}

function checkMax(maxCodePoints: number): void {
  if (!Number.isSafeInteger(maxCodePoints) || maxCodePoints < 0) {
    throw new RangeError(`maxCodePoints=${maxCodePoints}; it must be a non-negative integer`);
  }
}
