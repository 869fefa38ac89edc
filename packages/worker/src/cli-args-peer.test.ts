import { describe, expect, it } from "vitest";
import { parseArgs } from "./cli-args.js";

const base = ["--coordinator", "https://coord.test:7443"];

describe("parseArgs: the panel server for peers", () => {
  it("is off by default; --peer-listen or DCE_WORKER_PEER_LISTEN turns it on, the flag winning", () => {
    expect(parseArgs(base, {})).toMatchObject({
      ok: true,
      config: { peerListen: undefined, peerAdvertise: undefined, peerTimeoutMs: 3_000 },
    });
    expect(parseArgs([...base, "--peer-listen", "10.0.0.2:7071"], {})).toMatchObject({ config: { peerListen: "10.0.0.2:7071" } });
    const env = {
      DCE_WORKER_PEER_LISTEN: "10.0.0.3:7071",
      DCE_WORKER_PEER_ADVERTISE: "w3.example:7071",
      DCE_WORKER_PEER_TIMEOUT_MS: "900",
    };
    expect(parseArgs(base, env)).toMatchObject({
      config: { peerListen: "10.0.0.3:7071", peerAdvertise: "w3.example:7071", peerTimeoutMs: 900 },
    });
    expect(parseArgs([...base, "--peer-listen", "[::1]:0"], env)).toMatchObject({ config: { peerListen: "[::1]:0" } });
  });

  it("needs --peer-advertise when listening on every interface, and a dialable one", () => {
    const wildcard = parseArgs([...base, "--peer-listen", "0.0.0.0:7071"], {});
    expect(!wildcard.ok && wildcard.usage).toContain("give --peer-advertise");
    expect(parseArgs([...base, "--peer-listen", "[::]:7071"], {})).toMatchObject({ ok: false, exitCode: 2 });
    expect(parseArgs([...base, "--peer-listen", "0.0.0.0:7071", "--peer-advertise", "10.0.0.2:7071"], {})).toMatchObject({
      ok: true,
    });
    const zero = parseArgs([...base, "--peer-listen", "0.0.0.0:7071", "--peer-advertise", "10.0.0.2:0"], {});
    expect(!zero.ok && zero.usage).toContain("--peer-advertise must be an address other workers can dial");
  });

  it("refuses what is not HOST:PORT, and --peer-advertise alone", () => {
    for (const bad of ["7071", "::1:7071", "host:70000", "host:port", ""]) {
      const r = parseArgs([...base, "--peer-listen", bad === "" ? ":1" : bad], {});
      expect(!r.ok && r.usage).toContain("--peer-listen: expected HOST:PORT");
    }
    const alone = parseArgs([...base, "--peer-advertise", "10.0.0.2:7071"], {});
    expect(!alone.ok && alone.usage).toContain("--peer-advertise needs --peer-listen");
    const timeout = parseArgs([...base, "--peer-timeout-ms", "0"], {});
    expect(!timeout.ok && timeout.usage).toContain("--peer-timeout-ms must be an integer >= 1");
  });
});
