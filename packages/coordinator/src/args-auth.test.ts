import { describe, expect, it } from "vitest";
import { parseArgs } from "./args.js";

const command = (argv: string[], env: Record<string, string> = {}) => {
  const r = parseArgs(argv, env);
  if (!r.ok) throw new Error(`usage: ${r.usage}`);
  return r.command;
};

describe("coordinator flags for authentication", () => {
  it("keeps authentication on unless --dev-no-auth or DCE_DEV_NO_AUTH=1", () => {
    expect(command([])).toMatchObject({ kind: "serve", options: { devNoAuth: false, insecure: false } });
    expect(command(["--dev-no-auth"])).toMatchObject({ options: { devNoAuth: true } });
    expect(command([], { DCE_DEV_NO_AUTH: "1" })).toMatchObject({ options: { devNoAuth: true } });
  });

  it("parses the tokens commands, with --data-dir after the subcommand", () => {
    expect(command(["tokens", "add", "alice", "--data-dir", "/d"])).toEqual({
      kind: "tokens",
      action: "add",
      dataDir: "/d",
      name: "alice",
      role: "client",
    });
    expect(command(["tokens", "add", "root", "--role", "admin"], { DCE_DATA_DIR: "/env" })).toEqual({
      kind: "tokens",
      action: "add",
      dataDir: "/env",
      name: "root",
      role: "admin",
    });
    expect(command(["tokens", "rotate", "alice"])).toEqual({
      kind: "tokens",
      action: "rotate",
      dataDir: ".dce-data",
      name: "alice",
    });
    expect(command(["tokens", "revoke", "alice"])).toMatchObject({ action: "revoke", name: "alice" });
    expect(command(["tokens", "list", "--json"])).toMatchObject({ action: "list", json: true });
    expect(parseArgs(["tokens", "add", "x", "--role", "worker"], {})).toMatchObject({ ok: false, exitCode: 2 });
  });

  it("parses token weights: --weight on add and rotate, and tokens set-weight; 1..1000 only", () => {
    expect(command(["tokens", "add", "big", "--weight", "4"])).toMatchObject({ action: "add", name: "big", weight: 4 });
    expect(command(["tokens", "add", "small"])).not.toHaveProperty("weight");
    expect(command(["tokens", "rotate", "big", "--weight", "1000"])).toMatchObject({ action: "rotate", weight: 1000 });
    expect(command(["tokens", "set-weight", "big", "2", "--data-dir", "/d"])).toEqual({
      kind: "tokens",
      action: "set-weight",
      dataDir: "/d",
      name: "big",
      weight: 2,
    });
    for (const bad of ["0", "1001", "1.5", "x", ""]) {
      const r = parseArgs(["tokens", "add", "big", "--weight", bad], {});
      expect(r).toMatchObject({ ok: false, exitCode: 2 });
      expect(r.ok ? "" : r.usage).toContain("--weight must be an integer from 1 to 1000");
      expect(parseArgs(["tokens", "set-weight", "big", bad], {})).toMatchObject({ ok: false, exitCode: 2 });
    }
  });

  it("init-certs writes one certificate per worker: 2 by default, --workers N for more", () => {
    expect(command(["init-certs", "--out", "certs"])).toMatchObject({ kind: "init-certs", outDir: "certs", workers: 2 });
    expect(command(["init-certs", "--out", "certs", "--workers", "4"])).toMatchObject({ kind: "init-certs", workers: 4 });
    expect(command(["init-certs", "--out", "certs", "--workers", "0"])).toMatchObject({ kind: "init-certs", workers: 0 });
    for (const bad of [
      ["--workers", "-1"],
      ["--workers", "2.5"],
      ["--workers", "1001"],
      ["--workers", "2", "--worker", "w"],
    ]) {
      expect(parseArgs(["init-certs", "--out", "certs", ...bad], {})).toMatchObject({ ok: false, exitCode: 2 });
    }
  });

  it("takes the data dir of the tokens commands from where the server's comes from: the same env, default and flag", () => {
    const dataDir = (argv: string[], env: Record<string, string> = {}) => (command(argv, env) as { dataDir?: string }).dataDir;
    const serverDataDir = (env: Record<string, string>) => (command([], env) as { options: { dataDir: string } }).options.dataDir;
    for (const env of [{}, { DCE_DATA_DIR: "/env" }, { DCE_DATA_DIR: "" }]) {
      for (const sub of [
        ["tokens", "add", "a"],
        ["tokens", "rotate", "a"],
        ["tokens", "revoke", "a"],
        ["tokens", "list"],
      ]) {
        expect(dataDir(sub, env)).toBe(serverDataDir(env));
      }
    }
    // --data-dir before the subcommand (where the server's goes) still names the tokens' folder.
    expect(dataDir(["--data-dir", "/srv", "tokens", "add", "a"], { DCE_DATA_DIR: "/env" })).toBe("/srv");
    expect(dataDir(["--data-dir", "/srv", "tokens", "list"])).toBe("/srv");
    // After it, it is the subcommand's own, which wins.
    expect(dataDir(["--data-dir", "/srv", "tokens", "revoke", "a", "--data-dir", "/d"])).toBe("/d");
  });

  it("init-certs keeps an existing CA unless --force; --force makes no sense with --worker", () => {
    expect(command(["init-certs", "--out", "certs"])).toMatchObject({ kind: "init-certs", force: false });
    expect(command(["init-certs", "--out", "certs", "--force"])).toMatchObject({ kind: "init-certs", force: true });
    expect(parseArgs(["init-certs", "--out", "certs", "--worker", "w", "--force"], {})).toMatchObject({
      ok: false,
      exitCode: 2,
      usage: expect.stringContaining("--worker keeps the CA in --out"),
    });
  });

  it("issues one more worker certificate with init-certs --worker", () => {
    expect(command(["init-certs", "--out", "certs", "--worker", "gpu-3", "--valid-days", "30"])).toEqual({
      kind: "issue-worker-cert",
      outDir: "certs",
      name: "gpu-3",
      validDays: 30,
    });
  });
});
