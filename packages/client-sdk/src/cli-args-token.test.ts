import { describe, expect, it } from "vitest";
import { parseArgs } from "./cli-args.js";

const split = (s: string): string[] => s.split(" ").filter((x) => x !== "");

describe("parseArgs: the bearer token", () => {
  it("reads --token or DCE_TOKEN; the flag wins; an empty DCE_TOKEN is unset", () => {
    expect(parseArgs(split("status j1 --token flag_tok"), {})).toMatchObject({
      ok: true,
      command: { connection: { token: "flag_tok" } },
    });
    expect(parseArgs(split("status j1"), { DCE_TOKEN: "env_tok" })).toMatchObject({
      command: { connection: { token: "env_tok" } },
    });
    expect(parseArgs(split("submit a b -o c --token flag_tok"), { DCE_TOKEN: "env_tok" })).toMatchObject({
      command: { connection: { token: "flag_tok" } },
    });
    const none = parseArgs(split("status j1"), { DCE_TOKEN: "" });
    expect(none.ok && none.command.connection).not.toHaveProperty("token");
  });

  it("rejects a token with spaces or control characters without echoing it", () => {
    const r = parseArgs(["status", "j1"], { DCE_TOKEN: "secret value" });
    expect(r).toMatchObject({ ok: false, exitCode: 2 });
    expect(!r.ok && r.usage).toContain("--token/DCE_TOKEN must be");
    expect(!r.ok && r.usage).not.toContain("secret value");
  });
});
