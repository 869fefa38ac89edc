import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  addToken,
  hashToken,
  parseTokenFile,
  readTokenFile,
  revokeToken,
  setTokenWeight,
  TOKEN_RELOAD_INTERVAL_MS,
  TokenFileError,
  TokenStore,
  tokenFilePath,
} from "./tokens.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const dir = mkdtempSync(join(tmpdir(), "dce-tokens-"));
  dirs.push(dir);
  return dir;
}

describe("the token file", () => {
  it("stores only a SHA-256 of each 256-bit token, with mode 0600", async () => {
    const dir = tmp();
    const token = await addToken(dir, "alice", "client", { now: new Date("2030-01-02T03:04:05Z") });
    expect(token).toMatch(/^dce_[A-Za-z0-9_-]{43}$/);
    const text = readFileSync(tokenFilePath(dir), "utf8");
    expect(text).not.toContain(token.slice(4));
    expect(readTokenFile(dir)).toEqual([
      { name: "alice", role: "client", sha256: hashToken(token), createdAt: "2030-01-02T03:04:05.000Z", weight: 1 },
    ]);
    expect(statSync(tokenFilePath(dir)).mode & 0o777).toBe(0o600);
  });

  it("creates a missing data dir owner-only, as the coordinator would (its blobs are offered as a local store on that basis)", async () => {
    // `tokens add` usually runs before the first start, so it is the one that creates the dir.
    const dataDir = join(tmp(), "data");
    await addToken(dataDir, "alice", "client");
    expect(statSync(dataDir).mode & 0o077).toBe(0);
  });

  it("refuses a second token of the same name; rotation replaces it and keeps the role", async () => {
    const dir = tmp();
    const first = await addToken(dir, "ops", "admin");
    await expect(addToken(dir, "ops", "client")).rejects.toThrow(TokenFileError);
    const second = await addToken(dir, "ops", undefined, { replace: true });
    expect(second).not.toBe(first);
    expect(readTokenFile(dir)).toMatchObject([{ name: "ops", role: "admin", sha256: hashToken(second) }]);
    await expect(addToken(dir, "nobody", undefined, { replace: true })).rejects.toThrow("no token named nobody");
    expect((await addToken(dir, "fresh", undefined)).length).toBeGreaterThan(40);
    expect(readTokenFile(dir).find((e) => e.name === "fresh")?.role).toBe("client");
  });

  it("revokes by name", async () => {
    const dir = tmp();
    await addToken(dir, "a", "client");
    await addToken(dir, "b", "client");
    await revokeToken(dir, "a");
    expect(readTokenFile(dir).map((e) => e.name)).toEqual(["b"]);
    await expect(revokeToken(dir, "a")).rejects.toThrow("no token named a");
  });

  it("checks names and roles", async () => {
    const dir = tmp();
    for (const name of ["", "-x", "a b", "../x", "x".repeat(65), "é"]) {
      await expect(addToken(dir, name, "client")).rejects.toThrow(TokenFileError);
    }
    await expect(addToken(dir, "x", "worker" as "client")).rejects.toThrow("role must be one of client, admin");
    expect(readTokenFile(dir)).toEqual([]);
  });

  it("rejects malformed files with a message naming the problem", () => {
    expect(() => parseTokenFile("{")).toThrow("not valid JSON");
    expect(() => parseTokenFile('{"version":2,"tokens":[]}')).toThrow('"version": 1');
    expect(() => parseTokenFile('{"version":1,"tokens":[{"name":"a"}]}')).toThrow("entry 0 is malformed");
    const e = { name: "a", role: "client", sha256: "0".repeat(64), createdAt: "t" };
    expect(() => parseTokenFile(JSON.stringify({ version: 1, tokens: [e, e] }))).toThrow("listed twice");
    // A file written before weights reads with weight 1.
    expect(parseTokenFile(JSON.stringify({ version: 1, tokens: [e] }))).toEqual([{ ...e, weight: 1 }]);
    for (const weight of [0, 1001, 2.5, "3", null]) {
      expect(() => parseTokenFile(JSON.stringify({ version: 1, tokens: [{ ...e, weight }] }))).toThrow("entry 0 is malformed");
    }
  });

  it("stores a weight with the token: set at add, kept by rotation unless given, changed by setTokenWeight", async () => {
    const dir = tmp();
    const token = await addToken(dir, "big", "client", { weight: 4 });
    expect(readTokenFile(dir)).toMatchObject([{ name: "big", weight: 4 }]);
    expect(JSON.parse(readFileSync(tokenFilePath(dir), "utf8")).tokens[0].weight).toBe(4);
    await addToken(dir, "big", undefined, { replace: true });
    expect(readTokenFile(dir)[0]?.weight).toBe(4);
    await addToken(dir, "big", undefined, { replace: true, weight: 2 });
    expect(readTokenFile(dir)[0]?.weight).toBe(2);
    await setTokenWeight(dir, "big", 1000);
    expect(readTokenFile(dir)[0]?.weight).toBe(1000);
    expect(readTokenFile(dir)[0]?.sha256).not.toBe(hashToken(token)); // rotated above, kept by set-weight
    await expect(setTokenWeight(dir, "big", 1001)).rejects.toThrow("weight must be an integer from 1 to 1000, got 1001");
    await expect(setTokenWeight(dir, "nobody", 2)).rejects.toThrow("no token named nobody");
    await expect(addToken(dir, "zero", "client", { weight: 0 })).rejects.toThrow(TokenFileError);
    expect(readTokenFile(dir).map((e) => e.name)).toEqual(["big"]);
  });
});

describe("TokenStore", () => {
  it("accepts listed tokens only, and sees a revocation after the reload interval", async () => {
    const dir = tmp();
    const token = await addToken(dir, "alice", "client");
    let now = 1_000;
    const store = new TokenStore(dir, { nowMs: () => now });
    expect(store.verify(token)).toEqual({ ok: true, name: "alice", role: "client", weight: 1 });
    expect(store.verify(`${token}x`)).toMatchObject({ ok: false });
    expect(store.verify("")).toEqual({ ok: false, reason: "malformed bearer token" });
    expect(store.verify("x".repeat(300))).toEqual({ ok: false, reason: "malformed bearer token" });
    await revokeToken(dir, "alice");
    // Within the interval the file is not looked at again.
    now += TOKEN_RELOAD_INTERVAL_MS - 1;
    expect(store.verify(token).ok).toBe(true);
    now += 1;
    expect(store.verify(token)).toEqual({
      ok: false,
      reason:
        "token not recognised (wrong, revoked or rotated, or added with `coordinator tokens` to another data dir than this coordinator's)",
    });
    const bob = await addToken(dir, "bob", "admin");
    now += TOKEN_RELOAD_INTERVAL_MS;
    expect(store.verify(bob)).toEqual({ ok: true, name: "bob", role: "admin", weight: 1 });
    expect(store.size).toBe(1);
  });

  it("fails closed on a corrupt file and recovers once it is fixed", async () => {
    const dir = tmp();
    const token = await addToken(dir, "alice", "client");
    const good = readFileSync(tokenFilePath(dir), "utf8");
    let now = 0;
    const errors: string[] = [];
    const store = new TokenStore(dir, { nowMs: () => now, onError: (m) => errors.push(m) });
    writeFileSync(tokenFilePath(dir), "{ not json");
    now += TOKEN_RELOAD_INTERVAL_MS;
    expect(store.verify(token).ok).toBe(false);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain("refusing every token");
    writeFileSync(tokenFilePath(dir), good);
    now += TOKEN_RELOAD_INTERVAL_MS;
    expect(store.verify(token).ok).toBe(true);
  });

  it("treats a missing file as no tokens", () => {
    const store = new TokenStore(join(tmp(), "absent"));
    expect(store.size).toBe(0);
    expect(store.verify("dce_x").ok).toBe(false);
  });
});
