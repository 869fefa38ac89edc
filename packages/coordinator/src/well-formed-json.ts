/**
 * The text decoder of the coordinator's JSON codec (Connect JSON, gRPC+JSON, gRPC-web+JSON).
 *
 * Binary protobuf cannot carry a lone surrogate: its strings are UTF-8, and invalid
 * UTF-8 decodes to U+FFFD. JSON can, as an escape (`"\ud800"`), and such a string then
 * reached ids, idempotency keys, cancel reasons and the messages that quote them, and
 * protocol-layer parse errors quoted it too (`expected number, got "\ud800"`), before
 * any interceptor could clean the message. Decoding JSON requests through
 * {@link wellFormedJsonDecoder} gives every string the value binary protobuf would have
 * given it: each lone surrogate becomes U+FFFD. Found by test/fuzz (issue 12).
 *
 * @module
 */
import { toWellFormed } from "@dce/core";

/** A `\uD800`–`\uDFFF` escape: only text holding one can hold a lone surrogate after JSON.parse. */
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

/** `v` with every string, keys included, made well-formed; `found.lone` is set if one was not. */
function clean(v: unknown, found: { lone: boolean }): unknown {
  const text = (s: string) => {
    const w = toWellFormed(s);
    if (w !== s) found.lone = true;
    return w;
  };
  if (typeof v === "string") return text(v);
  if (Array.isArray(v)) return v.map((x) => clean(x, found));
  if (v !== null && typeof v === "object") {
    // fromEntries defines own properties: a "__proto__" key stays a key.
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [text(k), clean(x, found)]));
  }
  return v;
}

/**
 * For `jsonOptions.textDecoder` of a Connect router: UTF-8 to text, with lone surrogate
 * escapes replaced so the parsed strings are well-formed. Text that is not valid JSON
 * is returned as it is, for the JSON parser to refuse, and so is text without a lone
 * surrogate. Rewritten text reads the same to protobuf-es, which parses numbers with
 * `JSON.parse` too.
 */
export const wellFormedJsonDecoder = {
  decode(bytes: Uint8Array): string {
    const text = new TextDecoder().decode(bytes);
    if (!SURROGATE_ESCAPE.test(text)) return text;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return text;
    }
    const found = { lone: false };
    const cleaned = clean(parsed, found);
    // Pairs only (an escaped emoji): the text goes on exactly as it came.
    return found.lone ? JSON.stringify(cleaned) : text;
  },
};
