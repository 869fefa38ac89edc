import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

// The gRPC health and reflection code in src/gen is generated from proto/ by this
// package's buf.gen.yaml and committed. This test regenerates it into a temporary
// folder and fails on any difference, naming the stale file; fix it with
// `pnpm --filter @dce/coordinator generate`.

const PKG = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = resolve(PKG, "../../node_modules/.bin");

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

describe("generated code", () => {
  it("src/gen matches what buf generates from proto/", { timeout: 60_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), "dce-gen-"));
    try {
      await promisify(execFile)(join(BIN, "buf"), ["generate", "--output", out], {
        cwd: PKG,
        env: { ...process.env, PATH: `${BIN}${delimiter}${process.env.PATH ?? ""}` },
      });
      const committed = join(PKG, "src/gen");
      const fresh = join(out, "src/gen");
      expect(listFiles(fresh)).toEqual(listFiles(committed));
      for (const f of listFiles(fresh)) {
        expect(readFileSync(join(committed, f), "utf8"), `src/gen/${f} is stale`).toBe(readFileSync(join(fresh, f), "utf8"));
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
