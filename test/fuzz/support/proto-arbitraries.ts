import {
  create,
  type DescEnum,
  type DescField,
  type DescMessage,
  type DescService,
  type Message,
  ScalarType,
} from "@bufbuild/protobuf";
import fc from "fast-check";

/** Values the generators mix in so that requests get past the first checks (real ids, blob hashes). */
export interface FuzzContext {
  readonly strings: readonly string[];
  readonly numbers: readonly number[];
  /** No value of a megabyte or more (used for the elements of very long lists). */
  readonly small?: boolean;
}

const U32_EDGES = [0, 1, 2, 3, 4, 7, 8, 16, 64, 255, 256, 1024, 65_535, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff];
const I32_EDGES = [0, 1, -1, 2, 0x7fff_ffff, -0x8000_0000, 1024, -1024];
const U64_EDGES = [
  0n,
  1n,
  8n,
  128n,
  2n ** 31n,
  2n ** 32n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 53n + 1n,
  2n ** 63n - 1n,
  2n ** 63n,
  2n ** 64n - 1n,
];
const I64_EDGES = [0n, 1n, -1n, 2n ** 53n + 1n, -(2n ** 53n) - 1n, 2n ** 63n - 1n, -(2n ** 63n)];

/** Strings with a known way to hurt: paths, NULs, format specifiers, look-alike ids, very long text. */
const NASTY_STRINGS = [
  "",
  "auto",
  "reference",
  "native-blas",
  "a".repeat(64),
  "A".repeat(64),
  "0".repeat(63),
  "../../../../etc/passwd",
  "/dev/zero",
  "\u0000",
  "%s%n%x",
  "'; DROP TABLE jobs; --",
  "$" + "{process.exit()}",
  "\ud800",
  "x".repeat(129),
  "y".repeat(257),
  "z".repeat(10_000),
];

/**
 * UTF-16 units at which the coordinator cuts client text for a message (ids at 64, token
 * and worker names at 80, idempotency keys at 128, health service names at 200, reflection
 * names and identities at 256, rejection reasons at 512, stored texts and whole messages at
 * 1024). A string whose pair straddles one of them splits if anything cuts it with slice().
 */
export const CUT_POINTS = [64, 80, 128, 200, 256, 512, 1024] as const;

const ROCKET = "\u{1f680}";
/** The kind of text issue 12 reported: ASCII, emoji and CJK mixed, about 3 KB of UTF-8. */
const MIXED = `worker-\u{1f680}-漢字テスト-\u{1f4a5}-é-ascii-`.repeat(90);

/**
 * Text beyond ASCII: astral characters (emoji, ZWJ sequences, flags, mathematical letters),
 * combining marks, CJK, bidi overrides and controls, very long mixed strings, and a pair
 * straddling every cut point of {@link CUT_POINTS} (an all-emoji run of either parity
 * straddles every cut point at once, whatever prefix a message puts before it).
 */
export const UNICODE_STRINGS: readonly string[] = [
  MIXED,
  `x${MIXED}`,
  ROCKET.repeat(1600),
  `a${ROCKET.repeat(1600)}`,
  "e\u0301".repeat(1600),
  `Z${"\u0336\u0301\u0316\u0489".repeat(200)}`,
  "\u{1f469}\u200d\u{1f469}\u200d\u{1f467}\u200d\u{1f466}\u{1f1fa}\u{1f1f3}",
  "\u{1d518}\u{1d52b}\u{1d526}\u{1d520}\u{1d52c}\u{1d521}\u{1d522}",
  "漢字".repeat(1500),
  "\u202eevil\u202c \u2066x\u2069 \u2028 \u0085 \u001b[2J\r\n\u0000",
  ...CUT_POINTS.flatMap((k) => [`${"a".repeat(k - 1)}${ROCKET}${MIXED}`, `${"漢".repeat(k - 1)}${ROCKET}tail`]),
];

/**
 * Lone surrogates. A JavaScript client encoding protobuf binary replaces them with U+FFFD
 * (TextEncoder), so the server only sees them through JSON (`"\ud800"` escapes): the fuzz
 * suite sends part of its requests as gRPC+JSON for that.
 */
export const LONE_SURROGATES: readonly string[] = [
  "\ud800",
  "a\udfff",
  `${"a".repeat(63)}\ud83d`,
  `${"a".repeat(127)}\ude80${"b".repeat(200)}`,
  `\ude80${ROCKET}\ud83d`.repeat(700),
];

/** Random text of astral, combining, CJK and ASCII characters whose pair straddles a cut point. */
function straddling(): fc.Arbitrary<string> {
  const bmp = fc.constantFrom("a", "Z", "-", "é", "漢", "\u0301", " ");
  const any = fc.constantFrom("a", "漢", "\u0301", ROCKET, "\u{1f1fa}", "\u{1d518}", "\u200d", "\ud800");
  return fc
    .tuple(fc.constantFrom(...CUT_POINTS), fc.integer({ min: 0, max: 2 }), fc.array(any, { maxLength: 1500 }))
    .chain(([k, before, tail]) =>
      fc
        .string({ unit: bmp, minLength: k - 1 - before, maxLength: k - 1 - before })
        .map((head) => `${head}${ROCKET}${tail.join("")}`),
    );
}

/** Short non-ASCII text, for the elements of very long lists. */
function smallUnicode(): fc.Arbitrary<string> {
  return fc.oneof(fc.string({ unit: "grapheme", maxLength: 8 }), fc.constantFrom(ROCKET, "e\u0301", "漢", "\ud800", "\u001b"));
}

/** Rare, large values: a field of about 1 MiB, and one over the 4 MiB message limit. */
const HUGE_STRING = "h".repeat(1 << 20);
const OVERSIZED_BYTES = new Uint8Array(5 * 1024 * 1024);

function u32(ctx: FuzzContext): fc.Arbitrary<number> {
  return fc.oneof(
    { arbitrary: fc.constantFrom(...U32_EDGES, ...ctx.numbers.filter((n) => n >= 0 && n <= 0xffff_ffff)), weight: 3 },
    { arbitrary: fc.integer({ min: 0, max: 64 }), weight: 2 },
    { arbitrary: fc.integer({ min: 0, max: 0xffff_ffff }), weight: 1 },
  );
}

function i32(): fc.Arbitrary<number> {
  return fc.oneof(fc.constantFrom(...I32_EDGES), fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff }));
}

function u64(ctx: FuzzContext): fc.Arbitrary<bigint> {
  return fc.oneof(
    { arbitrary: fc.constantFrom(...U64_EDGES, ...ctx.numbers.map((n) => BigInt(n)).filter((n) => n >= 0n)), weight: 3 },
    { arbitrary: fc.bigInt({ min: 0n, max: 2048n }), weight: 2 },
    { arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), weight: 1 },
  );
}

function i64(): fc.Arbitrary<bigint> {
  return fc.oneof(fc.constantFrom(...I64_EDGES), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }));
}

function str(ctx: FuzzContext): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: fc.constantFrom(...(ctx.strings.length > 0 ? ctx.strings : [""])), weight: 6 },
    { arbitrary: fc.constantFrom(...NASTY_STRINGS), weight: 3 },
    { arbitrary: fc.string({ maxLength: 24 }), weight: 2 },
    { arbitrary: fc.string({ unit: "binary", maxLength: 24 }), weight: 1 },
    { arbitrary: fc.string({ unit: "grapheme", maxLength: 24 }), weight: 1 },
    { arbitrary: ctx.small ? smallUnicode() : fc.constantFrom(...UNICODE_STRINGS), weight: 2 },
    { arbitrary: ctx.small ? smallUnicode() : straddling(), weight: 2 },
    { arbitrary: fc.constantFrom(...(ctx.small ? LONE_SURROGATES.slice(0, 3) : LONE_SURROGATES)), weight: 1 },
    { arbitrary: fc.constant(ctx.small ? "" : HUGE_STRING), weight: 1 },
  );
}

function bytes(ctx: FuzzContext): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    { arbitrary: fc.uint8Array({ maxLength: 64 }), weight: 6 },
    { arbitrary: fc.integer({ min: 0, max: 64 }).map((n) => new Uint8Array(n * 8)), weight: 3 },
    { arbitrary: fc.constant(new Uint8Array(ctx.small ? 0 : 1 << 20)), weight: 1 },
    { arbitrary: fc.constant(ctx.small ? new Uint8Array(0) : OVERSIZED_BYTES), weight: 1 },
  );
}

function double(): fc.Arbitrary<number> {
  return fc.oneof(fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, -1), fc.double());
}

function enumValue(e: DescEnum): fc.Arbitrary<number> {
  // Unknown values are valid on the wire (proto3 enums are open): the server must cope with them.
  return fc.oneof(fc.constantFrom(...e.values.map((v) => v.number)), fc.constantFrom(-1, 99, 0x7fff_ffff));
}

function scalar(t: ScalarType, ctx: FuzzContext): fc.Arbitrary<unknown> {
  switch (t) {
    case ScalarType.STRING:
      return str(ctx);
    case ScalarType.BYTES:
      return bytes(ctx);
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return u32(ctx);
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return i32();
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return u64(ctx);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return i64();
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return double();
  }
}

function single(f: DescField, ctx: FuzzContext, depth: number): fc.Arbitrary<unknown> {
  switch (f.fieldKind) {
    case "scalar":
      return scalar(f.scalar, ctx);
    case "enum":
      return enumValue(f.enum);
    case "message":
      return initArb(f.message, ctx, depth + 1);
    case "list": {
      const elemOf = (c: FuzzContext) =>
        f.listKind === "scalar"
          ? scalar(f.scalar, c)
          : f.listKind === "enum"
            ? enumValue(f.enum)
            : initArb(f.message, c, depth + 1);
      const bulk = elemOf({ ...ctx, small: true });
      return fc.oneof(
        { arbitrary: fc.array(elemOf(ctx), { maxLength: 4 }), weight: 8 },
        // Many elements at once: one request naming thousands of leases or kernels.
        {
          arbitrary: bulk.chain((e) => fc.integer({ min: 100, max: 5000 }).map((n) => Array.from({ length: n }, () => e))),
          weight: 1,
        },
      );
    }
    case "map": {
      const value =
        f.mapKind === "scalar"
          ? scalar(f.scalar, ctx)
          : f.mapKind === "enum"
            ? enumValue(f.enum)
            : initArb(f.message, ctx, depth + 1);
      const key = scalar(f.mapKey, ctx).map((k) => (typeof k === "bigint" ? k.toString() : String(k)));
      return fc.dictionary(key, value, { maxKeys: 4 });
    }
  }
}

/** Plain init objects for `create(desc, init)`: every field optional, oneofs as `{ case, value }`. */
function initArb(desc: DescMessage, ctx: FuzzContext, depth: number): fc.Arbitrary<Record<string, unknown>> {
  if (depth > 4) return fc.constant({});
  const parts: Record<string, fc.Arbitrary<unknown>> = {};
  for (const member of desc.members) {
    if (member.kind === "oneof") {
      parts[member.localName] = fc.oneof(
        fc.constant(undefined),
        ...member.fields.map((f) => single(f, ctx, depth).map((value) => ({ case: f.localName, value }))),
      );
    } else {
      parts[member.localName] = fc.option(single(member, ctx, depth), { nil: undefined, freq: 4 });
    }
  }
  return fc.record(parts).map((r) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)));
}

/** Random, well-formed messages of `desc`: any field value the schema allows, including edge cases. */
export function messageArb(desc: DescMessage, ctx: FuzzContext): fc.Arbitrary<Message> {
  return initArb(desc, ctx, 0).map((init) => create(desc, init as never));
}

/** Every service in a module's exports (generated `*_pb.js` files export their service descriptors). */
export function servicesOf(mod: Record<string, unknown>): DescService[] {
  return Object.values(mod).filter(
    (v): v is DescService => typeof v === "object" && v !== null && (v as { kind?: unknown }).kind === "service",
  );
}
