import { fromJsonString } from "@bufbuild/protobuf";
import { HeartbeatRequestSchema } from "@dce/proto";
import { describe, expect, it } from "vitest";
import { wellFormedJsonDecoder } from "./well-formed-json.js";

const decode = (json: string) => wellFormedJsonDecoder.decode(new TextEncoder().encode(json));

describe("wellFormedJsonDecoder", () => {
  it("replaces lone surrogate escapes, in values and keys, as binary protobuf would", () => {
    const text = decode('{"workerId":"a\\ud800b\\udc00","leases":[{"jobId":"\\ud83d"}],"\\udfff":1}');
    expect(JSON.parse(text)).toEqual({ workerId: "a\ufffdb\ufffd", leases: [{ jobId: "\ufffd" }], "\ufffd": 1 });
    const m = fromJsonString(HeartbeatRequestSchema, text, { ignoreUnknownFields: true });
    expect(m.workerId).toBe("a\ufffdb\ufffd");
  });

  it("keeps pairs, escaped backslashes and everything else as sent", () => {
    const json = '{"workerId":"\\ud83d\\ude80 \\\\ud800 漢 \\u0000","n":18446744073709551615}';
    expect(decode(json)).toBe(json);
    const paired = '{"workerId":"\\ud83d\\ude80\\ud800"}';
    expect(JSON.parse(decode(paired))).toEqual({ workerId: "\u{1f680}\ufffd" });
  });

  it("leaves text that is not JSON to the parser, and a __proto__ key a key", () => {
    expect(decode('{"a":"\\ud800"')).toBe('{"a":"\\ud800"');
    expect(JSON.parse(decode('{"__proto__":{"x":"\\ud800"}}'))).toEqual(JSON.parse('{"__proto__":{"x":"\\ufffd"}}'));
  });
});
