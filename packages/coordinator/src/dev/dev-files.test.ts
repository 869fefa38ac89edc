import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { addToken, readTokenFile, TokenStore } from "../tokens.js";
import { ensureDevToken, prepareDevFiles } from "./dev-files.js";

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "dce-dev-files-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("prepareDevFiles", () => {
  it("makes a CA, a certificate per worker and two tokens, and reuses them on the next run", async () => {
    const dir = join(tempDir(), "dev");
    const first = await prepareDevFiles(dir, 1);
    expect(first.createdCa).toBe(true);
    expect(first.workers.map((w) => w.name)).toEqual(["dev-1"]);
    expect(statSync(join(dir, "token")).mode & 0o777).toBe(0o600);
    const store = new TokenStore(first.dataDir);
    expect(store.verify(first.token)).toEqual({ ok: true, name: "dev", role: "client", weight: 1 });
    expect(store.verify(first.adminToken)).toEqual({ ok: true, name: "dev-admin", role: "admin", weight: 1 });
    const ca = readFileSync(first.caPath, "utf8");
    const worker1 = readFileSync(first.workers[0]?.cert ?? "", "utf8");

    const second = await prepareDevFiles(dir, 2);
    expect(second.createdCa).toBe(false);
    expect(readFileSync(second.caPath, "utf8")).toBe(ca);
    expect(readFileSync(second.workers[0]?.cert ?? "", "utf8")).toBe(worker1);
    expect(second.workers.map((w) => w.name)).toEqual(["dev-1", "dev-2"]);
    expect([second.token, second.adminToken]).toEqual([first.token, first.adminToken]);
  });
});

describe("ensureDevToken", () => {
  it("rotates the token when the kept copy no longer matches the token file", async () => {
    const dir = tempDir();
    const dataDir = join(dir, "data");
    const copy = join(dir, "token");
    const first = await ensureDevToken(dataDir, copy, "dev", "client");
    // Someone rotated `dev` with `coordinator tokens rotate dev`: the copy is stale.
    await addToken(dataDir, "dev", undefined, { replace: true });
    const second = await ensureDevToken(dataDir, copy, "dev", "client");
    expect(second).not.toBe(first);
    expect(readFileSync(copy, "utf8").trim()).toBe(second);
    expect(new TokenStore(dataDir).verify(second).ok).toBe(true);
    expect(readTokenFile(dataDir).map((e) => e.name)).toEqual(["dev"]);
  });
});
