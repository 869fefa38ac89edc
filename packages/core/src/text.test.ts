import { describe, expect, it } from "vitest";
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

const ROCKET = "\u{1f680}"; // two UTF-16 units

describe("toWellFormed", () => {
  it.each([
    ["plain", "plain"],
    [`a${ROCKET}b`, `a${ROCKET}b`],
    ["a\ud83d", "a\ufffd"],
    ["\ude80b", "\ufffdb"],
    ["\ude80\ud83d", "\ufffd\ufffd"],
  ])("%j becomes %j", (s, want) => {
    expect(toWellFormed(s)).toBe(want);
  });
});

describe("clipCodePoints", () => {
  it("keeps text within the bound as it is", () => {
    expect(clipCodePoints("abc", 3)).toBe("abc");
    expect(clipCodePoints(ROCKET.repeat(3), 3)).toBe(ROCKET.repeat(3));
  });

  it("never cuts a surrogate pair where slice(0, 64) would", () => {
    const id = `${"a".repeat(63)}${ROCKET}tail`;
    expect(isWellFormed(id.slice(0, 64))).toBe(false);
    const cut = clipCodePoints(id, 64);
    expect(cut).toBe(`${"a".repeat(63)}${ELLIPSIS}`);
    expect(isWellFormed(cut)).toBe(true);
  });

  it("counts code points, not UTF-16 units", () => {
    expect(clipCodePoints(ROCKET.repeat(100), 10)).toBe(`${ROCKET.repeat(9)}${ELLIPSIS}`);
  });

  it("replaces lone surrogates, cut or not", () => {
    expect(clipCodePoints("x\ud800", 5)).toBe("x\ufffd");
    expect(clipCodePoints("\ud800".repeat(10), 3)).toBe(`\ufffd\ufffd${ELLIPSIS}`);
  });

  it("refuses a bound that is not a count", () => {
    expect(() => clipCodePoints("x", -1)).toThrow(RangeError);
    expect(() => clipCodePoints("x", 1.5)).toThrow(RangeError);
  });
});

describe("quote", () => {
  it("escapes control characters, separators and bidi overrides", () => {
    expect(quote("a\nb\tc\r\u0000\u001b[31m\u007f\u0085", 100)).toBe("a\\nb\\tc\\r\\u0000\\u001b[31m\\u007f\\u0085");
    expect(quote("x\u2028y\u202ez\u2066", 100)).toBe("x\\u2028y\\u202ez\\u2066");
  });

  it("keeps combining marks, emoji sequences and CJK", () => {
    const s = `e\u0301 ${ROCKET} \u{1f469}\u200d\u{1f4bb} 漢字`;
    expect(quote(s, 100)).toBe(s);
  });

  it("never cuts an escape in two", () => {
    expect(quote("ab\u001bcd", 4)).toBe(`ab${ELLIPSIS}`);
    expect(quote("ab\u001bcd", 9)).toBe(`ab\\u001b${ELLIPSIS}`);
  });

  it("cuts a 3 KB mixed id inside the bound, well-formed", () => {
    const id = `a${"worker-\u{1f680}-漢字-".repeat(300)}`;
    const q = quote(id, 64);
    expect(isWellFormed(q)).toBe(true);
    expect([...q]).toHaveLength(64);
    expect(q.endsWith(ELLIPSIS)).toBe(true);
  });

  it("quoting quoted text changes nothing", () => {
    const once = quote(`\n${ROCKET.repeat(50)}\ud800`, 20);
    expect(quote(once, 20)).toBe(once);
  });
});
