// Properties of the text helpers over arbitrary UTF-16 strings (lone surrogates included).
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { clipCodePoints, ELLIPSIS, quote, toWellFormed } from "./text.js";

/** What encodeURIComponent (the grpc-message encoder) accepts: no lone surrogate. (`String.prototype.isWellFormed` is ES2024; the core targets ES2022.) */
function isWellFormed(s: string): boolean {
  try {
    encodeURIComponent(s);
    return true;
  } catch {
    return false;
  }
}

/** Any UTF-16 string, weighted towards astral characters and controls near the usual cut points. */
const text = fc.oneof(
  fc.string({ unit: "binary", maxLength: 300 }),
  fc.string({ unit: fc.constantFrom("a", "\u{1f680}", "\u0301", "\n", "\u001b", "\ud800", "\udc00", "漢"), maxLength: 300 }),
);
const bound = fc.oneof(fc.constantFrom(0, 1, 63, 64, 128, 256), fc.integer({ min: 0, max: 400 }));
const codePoints = (s: string) => [...s].length;
const UNSAFE = /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

describe("text helpers", () => {
  test.prop([text, bound])("clipCodePoints: well-formed, bounded, a prefix when not cut", (s, max) => {
    const out = clipCodePoints(s, max);
    expect(isWellFormed(out)).toBe(true);
    expect(codePoints(out)).toBeLessThanOrEqual(max);
    if (codePoints(s) <= max) expect(out).toBe(toWellFormed(s));
    else if (max > 0) expect(toWellFormed(s).startsWith(out.slice(0, -ELLIPSIS.length))).toBe(true);
  });

  test.prop([text, bound])("quote: well-formed, bounded, no unsafe character, idempotent", (s, max) => {
    const out = quote(s, max);
    expect(isWellFormed(out)).toBe(true);
    expect(codePoints(out)).toBeLessThanOrEqual(max);
    expect(UNSAFE.test(out)).toBe(false);
    expect(quote(out, max)).toBe(out);
    // encodeURIComponent is what puts a message into the grpc-message trailer.
    expect(() => encodeURIComponent(out)).not.toThrow();
  });
});
