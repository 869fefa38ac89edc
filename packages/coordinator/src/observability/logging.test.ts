import { Writable } from "node:stream";
import { createLogger, REDACTED_LOG_PATHS, resolveLogFormat } from "@dce/runtime/logging";
import { describe, expect, it } from "vitest";
import { parseArgs } from "../args.js";

/** A destination that keeps what is written. */
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

/** Waits for a pretty stream (it writes on a later tick) to have written `lines` lines. */
async function lines(read: () => string, count: number): Promise<string[]> {
  for (let i = 0; i < 200 && read().split("\n").length <= count; i++) await new Promise((r) => setTimeout(r, 5));
  return read().trimEnd().split("\n");
}

const SECRET = "s3cr3t-t0ken-value";

describe("createLogger", () => {
  it("auto is JSON off a terminal and pretty on one; an explicit format wins", () => {
    expect(resolveLogFormat("auto", false)).toBe("json");
    expect(resolveLogFormat("auto", true)).toBe("pretty");
    expect(resolveLogFormat("json", true)).toBe("json");
    expect(resolveLogFormat("pretty", false)).toBe("pretty");
  });

  it("writes one JSON object per line, with the base fields, above the level", () => {
    const out = sink();
    const log = createLogger({ level: "info", destination: out.stream, base: { svc: "coordinator" } });
    log.debug({ jobId: "j-1" }, "hidden");
    log.info({ jobId: "j-1", shard: 3 }, "shard accepted");
    const parsed = out
      .text()
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed).toHaveLength(1);
    expect(parsed[0]).toMatchObject({ level: 30, svc: "coordinator", jobId: "j-1", shard: 3, msg: "shard accepted" });
  });

  it("writes pretty lines when asked, without JSON", async () => {
    const out = sink();
    const log = createLogger({ format: "pretty", destination: out.stream, base: { svc: "coordinator" } });
    log.info({ jobId: "j-2" }, "job submitted");
    const [first] = await lines(out.text, 1);
    expect(first).toContain("INFO");
    expect(first).toContain("job submitted");
    expect(out.text()).toContain('jobId: "j-2"');
    expect(first?.startsWith("{")).toBe(false);
  });

  it.each(["json", "pretty"] as const)("never writes a credential (%s)", async (format) => {
    const out = sink();
    const log = createLogger({ format, destination: out.stream });
    log.info(
      {
        authorization: `Bearer ${SECRET}`,
        token: SECRET,
        headers: { authorization: `Bearer ${SECRET}`, cookie: SECRET },
        req: { headers: { authorization: `Bearer ${SECRET}` } },
        worker: { bearerToken: SECRET, privateKey: SECRET, password: SECRET },
        metadata: { authorization: SECRET },
      },
      "call",
    );
    await lines(out.text, 1);
    expect(out.text()).toContain("call");
    expect(out.text()).toContain("[redacted]");
    expect(out.text()).not.toContain(SECRET);
    expect(REDACTED_LOG_PATHS).toContain("*.authorization");
  });
});

describe("--log-level and --log-format", () => {
  it("default to info and auto, read DCE_LOG_LEVEL / DCE_LOG_FORMAT, and the flag wins", () => {
    const serve = (argv: string[], env: Record<string, string> = {}) => {
      const r = parseArgs(argv, env);
      if (!r.ok || r.command.kind !== "serve") throw new Error(r.ok ? "not serve" : r.usage);
      return r.command;
    };
    expect(serve([])).toMatchObject({ logLevel: "info", logFormat: "auto" });
    expect(serve([], { DCE_LOG_LEVEL: "debug", DCE_LOG_FORMAT: "json" })).toMatchObject({ logLevel: "debug", logFormat: "json" });
    expect(serve(["--log-format", "pretty"], { DCE_LOG_FORMAT: "json" })).toMatchObject({ logFormat: "pretty" });
  });

  it("refuse unknown values from a flag or the environment (exit 2)", () => {
    for (const [argv, env] of [
      [["--log-format", "xml"], {}],
      [[], { DCE_LOG_FORMAT: "text" }],
      [[], { DCE_LOG_LEVEL: "loud" }],
    ] as const) {
      const r = parseArgs(argv, env);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.exitCode).toBe(2);
    }
  });
});
