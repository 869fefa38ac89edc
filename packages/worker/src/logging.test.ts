import { Writable } from "node:stream";
import { createLogger, resolveLogFormat } from "@dce/runtime/logging";
import { describe, expect, it } from "vitest";

function sink() {
  let text = "";
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, text: () => text };
}

async function settled(read: () => string): Promise<string> {
  for (let i = 0; i < 200 && !read().includes("\n"); i++) await new Promise((r) => setTimeout(r, 5));
  return read();
}

const SECRET = "w0rker-s3cret";

describe("worker createLogger", () => {
  it("auto picks JSON off a terminal and pretty on one", () => {
    expect(resolveLogFormat("auto", false)).toBe("json");
    expect(resolveLogFormat("auto", true)).toBe("pretty");
  });

  it("JSON lines carry the shard fields; credentials are redacted", () => {
    const out = sink();
    const log = createLogger({ level: "debug", destination: out.stream, base: { svc: "worker" } });
    log.debug({ jobId: "j", shard: 4, epoch: 9, token: SECRET, headers: { authorization: `Bearer ${SECRET}` } }, "shard leased");
    const line = JSON.parse(out.text()) as Record<string, unknown>;
    expect(line).toMatchObject({ svc: "worker", jobId: "j", shard: 4, epoch: 9, msg: "shard leased", token: "[redacted]" });
    expect(out.text()).not.toContain(SECRET);
  });

  it("pretty lines are not JSON and redact too", async () => {
    const out = sink();
    const log = createLogger({ format: "pretty", destination: out.stream });
    log.warn({ jobId: "j", shard: 1, authorization: SECRET }, "shard failed");
    const text = await settled(out.text);
    expect(text).toContain("WARN");
    expect(text).toContain("shard failed");
    expect(text.startsWith("{")).toBe(false);
    expect(text).not.toContain(SECRET);
  });
});
