import { type DescMethod, type Message, toBinary, toJsonString } from "@bufbuild/protobuf";
import fc from "fast-check";
import { decodes, decodesJson, lazy } from "./harness.js";
import { envelope } from "./raw-http2.js";

/** One hand-made request: its headers and body, and whether its message decodes with the schema. */
export interface RawCase {
  readonly kind: string;
  readonly headers: Record<string, string>;
  readonly body: Uint8Array;
  readonly wellFormed: boolean;
}

/**
 * Hand-made requests for `method`, built from the well-formed messages `valid`: garbage,
 * truncated and mutated bytes, bad envelopes, compression (a gzip bomb), wrong content
 * types, oversized bodies, and JSON (Connect and gRPC+JSON) with out-of-range numbers,
 * wrong types and lone surrogates. `auth` holds the credential headers, `bomb` the gzip bomb.
 */
export function rawCaseArb(
  method: DescMethod,
  valid: readonly Message[],
  { auth, bomb }: { auth: Readonly<Record<string, string>>; bomb: Uint8Array },
): fc.Arbitrary<RawCase> {
  const grpcHeaders = { "content-type": "application/grpc", te: "trailers", ...auth };
  const grpcJsonHeaders = { ...grpcHeaders, "content-type": "application/grpc+json" };
  return fc.integer({ min: 0, max: valid.length - 1 }).chain((vi) => {
    const bytes = toBinary(method.input, valid[vi] as never);
    const grpcCase = (kind: string, payload: Uint8Array, wellFormed = decodes(method.input, payload)): RawCase => ({
      kind,
      headers: grpcHeaders,
      body: envelope(payload),
      wellFormed,
    });
    return fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((g) => grpcCase("garbage", g)),
      fc.nat(bytes.length).map((n) => grpcCase("truncated", bytes.subarray(0, n))),
      fc.tuple(fc.nat(Math.max(0, bytes.length - 1)), fc.integer({ min: 0, max: 255 })).map(([at, v]) => {
        const copy = Uint8Array.from(bytes);
        if (copy.length > 0) copy[at] = v;
        return grpcCase("mutated", copy);
      }),
      // An unknown field (number 4095, varint) is valid protobuf and must be ignored.
      lazy(() => grpcCase("unknown-field", Buffer.concat([bytes, Buffer.from([0xf8, 0xff, 0x01, 0x2a])]))),
      // A varint of 11 bytes is never valid.
      lazy(() => grpcCase("overlong-varint", Buffer.concat([Buffer.from([0x08]), Buffer.alloc(10, 0xff), Buffer.from([0x01])]))),
      lazy(() => ({
        kind: "short-envelope",
        headers: grpcHeaders,
        body: envelope(bytes, { declaredLength: bytes.length + 100 }),
        wellFormed: false,
      })),
      lazy(() => ({
        kind: "4GiB-declared",
        headers: grpcHeaders,
        body: envelope(bytes, { declaredLength: 0xffff_ffff }),
        wellFormed: false,
      })),
      lazy(() => ({
        kind: "compressed-flag",
        headers: grpcHeaders,
        body: envelope(bytes, { flags: 1 }),
        wellFormed: false,
      })),
      lazy(() => ({
        kind: "gzip-bomb",
        headers: { ...grpcHeaders, "grpc-encoding": "gzip" },
        body: envelope(bomb, { flags: 1 }),
        wellFormed: false,
      })),
      lazy(() => ({
        kind: "unknown-encoding",
        headers: { ...grpcHeaders, "grpc-encoding": "snappy" },
        body: envelope(bytes, { flags: 1 }),
        wellFormed: false,
      })),
      lazy(() => ({
        kind: "two-messages",
        headers: grpcHeaders,
        body: Buffer.concat([envelope(bytes), envelope(bytes)]),
        wellFormed: false,
      })),
      lazy(() => ({ kind: "empty-body", headers: grpcHeaders, body: new Uint8Array(0), wellFormed: false })),
      // Over the 4 MiB limit, with a valid unknown field (number 4095, 6 MiB of bytes) so that it decodes.
      lazy(() =>
        grpcCase(
          "oversized",
          Buffer.concat([bytes, Buffer.from([0xfa, 0xff, 0x01, 0x80, 0x80, 0x80, 0x03]), Buffer.alloc(6 << 20)]),
        ),
      ),
      fc.constantFrom("text/plain", "application/xml", "application/grpc+thrift", "multipart/form-data", "").map((ct) => ({
        kind: "wrong-content-type",
        headers: { ...grpcHeaders, "content-type": ct },
        body: envelope(bytes),
        wellFormed: false,
      })),
      // The Connect protocol with JSON: NaN, infinities, negative and fractional sizes, huge numbers.
      fc
        .tuple(
          fc.constantFrom("unknownField", ...method.input.fields.map((f) => f.jsonName)),
          fc.constantFrom(
            '"NaN"',
            '"Infinity"',
            "-1",
            "-1.5",
            "1e400",
            '"-5"',
            "18446744073709551616",
            "null",
            "[]",
            '{"x":1}',
            '"\\u0000"',
            // Lone surrogates and a split pair: an error quoting them must still go out well-formed.
            '"\\ud800"',
            '"a\\udfff"',
            `"${"a".repeat(63)}\\ud83d\\ude80\\ud83d"`,
            '["\\ud800"]',
            '{"\\ud800":"\\udc00"}',
          ),
          fc.boolean(),
        )
        .map(([field, v, grpc]) => {
          const json = `{"${field}":${v}}`;
          // The same JSON through the Connect protocol (a JSON error body) and through gRPC (the
          // grpc-message trailer, which cannot carry a lone surrogate).
          return grpc
            ? { ...grpcCase("grpc-json", Buffer.from(json), decodesJson(method.input, json)), headers: grpcJsonHeaders }
            : {
                kind: "connect-json",
                headers: { "content-type": "application/json", "connect-protocol-version": "1", ...auth },
                body: Buffer.from(json),
                wellFormed: decodesJson(method.input, json),
              };
        }),
      // A random message of the schema as gRPC+JSON: its strings reach the server as they are.
      lazy(() => {
        const json = toJsonString(method.input, valid[vi] as never);
        return { ...grpcCase("grpc-json-message", Buffer.from(json), true), headers: grpcJsonHeaders };
      }),
      lazy(() => ({
        kind: "connect-json-garbage",
        headers: { "content-type": "application/json", "connect-protocol-version": "1", ...auth },
        body: Buffer.from('{"unterminated'),
        wellFormed: false,
      })),
      lazy(() => ({
        kind: "connect-gzip-bomb",
        headers: {
          "content-type": "application/proto",
          "content-encoding": "gzip",
          "connect-protocol-version": "1",
          ...auth,
        },
        body: bomb,
        wellFormed: false,
      })),
    );
  });
}
