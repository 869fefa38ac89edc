import { describe, expect, it } from "vitest";
import { parseArgs } from "./cli-args.js";

const base = ["--coordinator", "https://coord.test:7443"];

describe("parseArgs: the worker's client certificate", () => {
  it("reads --cert and --key, or DCE_WORKER_CERT and DCE_WORKER_KEY; the flags win", () => {
    const flags = parseArgs([...base, "--cert", "w.pem", "--key", "w-key.pem"], {});
    expect(flags).toMatchObject({ ok: true, config: { certFile: "w.pem", keyFile: "w-key.pem" } });
    const env = { DCE_WORKER_CERT: "e.pem", DCE_WORKER_KEY: "e-key.pem" };
    expect(parseArgs(base, env)).toMatchObject({ ok: true, config: { certFile: "e.pem", keyFile: "e-key.pem" } });
    expect(parseArgs([...base, "--cert", "f.pem", "--key", "f-key.pem"], env)).toMatchObject({
      config: { certFile: "f.pem", keyFile: "f-key.pem" },
    });
    expect(parseArgs(base, {})).toMatchObject({ ok: true, config: { certFile: undefined, keyFile: undefined } });
  });

  it("needs both files, and an https:// coordinator", () => {
    const one = parseArgs([...base, "--cert", "w.pem"], {});
    expect(one).toMatchObject({ ok: false, exitCode: 2 });
    expect(!one.ok && one.usage).toContain("--cert and --key go together");
    const plain = parseArgs(["--coordinator", "http://127.0.0.1:7070", "--cert", "w.pem", "--key", "k.pem"], {});
    expect(!plain.ok && plain.usage).toContain("need an https:// coordinator");
  });
});
