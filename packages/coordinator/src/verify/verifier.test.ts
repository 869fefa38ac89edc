import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { planMatMul, tileBounds } from "@dce/core";
import { afterAll, describe, expect, it } from "vitest";
import { Verifier } from "./verifier.js";

const dir = mkdtempSync(join(tmpdir(), "dce-verifier-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function matrix(rows: number, cols: number, seed: number): Float64Array {
  let x = seed;
  return Float64Array.from({ length: rows * cols }, () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x / 2 ** 30 - 1;
  });
}

/** A job of C = A(m×k)·B(k×n) in t×t tiles, with A and B written where the verifier reads them. */
function job(name: string, m: number, k: number, n: number, t: number) {
  const a = matrix(m, k, 1);
  const b = matrix(k, n, 2);
  const aPath = join(dir, `${name}-a`);
  const bPath = join(dir, `${name}-b`);
  writeFileSync(aPath, new Uint8Array(a.buffer));
  writeFileSync(bPath, new Uint8Array(b.buffer));
  const desc = (rows: number, cols: number) => ({ rows, cols, blobId: "0".repeat(64) });
  const plan = planMatMul({ a: desc(m, k), b: desc(k, n), tileRows: t, tileCols: t, kernel: "reference" });
  const tile = (shard: number): Uint8Array => {
    const bd = tileBounds(plan, shard);
    const w = bd.colEnd - bd.colStart;
    const c = new Float64Array((bd.rowEnd - bd.rowStart) * w);
    for (let i = bd.rowStart; i < bd.rowEnd; i++)
      for (let j = bd.colStart; j < bd.colEnd; j++) {
        let s = 0;
        for (let l = 0; l < k; l++) s += (a[i * k + l] as number) * (b[l * n + j] as number);
        c[(i - bd.rowStart) * w + (j - bd.colStart)] = s;
      }
    // Unaligned on purpose, as bytes inside a protobuf message may be.
    const bytes = new Uint8Array(c.byteLength + 1).subarray(1);
    bytes.set(new Uint8Array(c.buffer));
    return bytes;
  };
  return { spec: { id: name, plan, aPath, bPath }, plan, tile };
}

describe("Verifier (inline)", () => {
  it("accepts honest tiles and rejects a tile with one flipped bit, for every shard of a ragged plan", async () => {
    const v = new Verifier({ threads: 0 });
    const j = job("ragged", 13, 7, 11, 4);
    for (let shard = 0; shard < j.plan.shardCount; shard++) {
      const bytes = j.tile(shard);
      const ok = await v.check(j.spec, tileBounds(j.plan, shard), bytes);
      expect(ok).toMatchObject({ ok: true, rowsUnverifiable: 0 });
      bytes[bytes.length - 2] = (bytes[bytes.length - 2] as number) ^ 0x10; // a high exponent bit of the last entry
      const bad = await v.check(j.spec, tileBounds(j.plan, shard), bytes);
      expect(bad).toMatchObject({ ok: false });
    }
    await v.close();
  });

  it("uses fresh secret probes per job from the random source it is given", async () => {
    let draws = 0;
    const v = new Verifier({
      threads: 0,
      randomWords: (n) => {
        draws += n;
        return Uint32Array.from({ length: n }, (_, i) => (i * 2654435761) >>> 0);
      },
    });
    const j = job("probes", 4, 3, 6, 3);
    await v.check(j.spec, tileBounds(j.plan, 0), j.tile(0));
    await v.check(j.spec, tileBounds(j.plan, 1), j.tile(1));
    expect(draws).toBe(7 * 6); // one set of 7 rounds × 6 columns for the job
    v.forget("probes");
    await v.check(j.spec, tileBounds(j.plan, 1), j.tile(1));
    expect(draws).toBe(2 * 7 * 6);
    await v.close();
  });

  it("fails (rejects the promise) when a matrix cannot be read, and recovers once it can", async () => {
    const v = new Verifier({ threads: 0 });
    const j = job("missing", 4, 3, 4, 2);
    const gone = { ...j.spec, bPath: join(dir, "nope") };
    await expect(v.check(gone, tileBounds(j.plan, 0), j.tile(0))).rejects.toThrow();
    expect(await v.check(j.spec, tileBounds(j.plan, 0), j.tile(0))).toMatchObject({ ok: true });
    await v.close();
  });

  it("drops the least recently used projections beyond its cache budget", async () => {
    let draws = 0;
    const v = new Verifier({
      threads: 0,
      cacheBytes: 1,
      randomWords: (n) => {
        draws++;
        return new Uint32Array(n).fill(7);
      },
    });
    const a = job("lru-a", 4, 3, 4, 2);
    const b = job("lru-b", 4, 3, 4, 2);
    await v.check(a.spec, tileBounds(a.plan, 0), a.tile(0));
    await v.check(b.spec, tileBounds(b.plan, 0), b.tile(0)); // evicts a
    await v.check(a.spec, tileBounds(a.plan, 1), a.tile(1)); // prepared again
    expect(draws).toBe(3);
    await v.close();
  });
});

// The thread script is the built one (`pnpm test` builds first).
const threadUrl = new URL("../../dist/verify/verify-thread.js", import.meta.url);

describe.runIf(existsSync(threadUrl))("Verifier (threads)", () => {
  it("makes the A pass of a row band once, reading the band's rows of A once for all its tiles", async () => {
    const v = new Verifier({ threads: 1, inlineMaxFlops: 0, threadUrl });
    const j = job("bands", 40, 9, 37, 10); // 4 row bands × 4 column blocks, the last ones ragged
    const bandTiles = (band: number) => [0, 1, 2, 3].map((c) => band * j.plan.colTiles + c);
    // All tiles of band 0 at once: they share one pass.
    const first = await Promise.all(bandTiles(0).map((s) => v.check(j.spec, tileBounds(j.plan, s), j.tile(s))));
    for (const r of first) expect(r).toMatchObject({ ok: true, rowsChecked: 10 });
    // With A gone, band 0 still checks from its sums; band 1 needs A and cannot be checked.
    rmSync(j.spec.aPath);
    const bad = j.tile(2);
    bad[bad.length - 2] = (bad[bad.length - 2] as number) ^ 0x10;
    expect(await v.check(j.spec, tileBounds(j.plan, 2), bad)).toMatchObject({ ok: false });
    expect(await v.check(j.spec, tileBounds(j.plan, 3), j.tile(3))).toMatchObject({ ok: true });
    await expect(v.check(j.spec, tileBounds(j.plan, bandTiles(1)[0] as number), j.tile(4))).rejects.toThrow();
    await v.close();
  });

  it("gives the verdicts of the inline path for every shard", async () => {
    const threaded = new Verifier({ threads: 2, inlineMaxFlops: 0, threadUrl, randomWords: (n) => new Uint32Array(n).fill(99) });
    const inline = new Verifier({ threads: 0, randomWords: (n) => new Uint32Array(n).fill(99) });
    const j = job("same", 23, 17, 29, 7);
    for (let shard = 0; shard < j.plan.shardCount; shard++) {
      const bytes = j.tile(shard);
      if (shard % 3 === 1) bytes[bytes.length - 2] = (bytes[bytes.length - 2] as number) ^ 0x10;
      const [a, b] = await Promise.all([
        threaded.check(j.spec, tileBounds(j.plan, shard), bytes),
        inline.check(j.spec, tileBounds(j.plan, shard), bytes),
      ]);
      expect({ ...a, ms: 0 }).toEqual({ ...b, ms: 0 });
    }
    await Promise.all([threaded.close(), inline.close()]);
  });

  it("leaves the caller's bytes whole when a thread checks them, also when they are a Node Buffer (a tile read from its blob)", async () => {
    const v = new Verifier({ threads: 1, inlineMaxFlops: 0, threadUrl });
    const j = job("buffer", 64, 9, 64, 64); // 32 KiB: a Buffer of its own, not a slice of the pool
    const bytes = Buffer.from(j.tile(0));
    const length = bytes.byteLength;
    expect((await v.check(j.spec, tileBounds(j.plan, 0), bytes)).ok).toBe(true);
    // The core then takes these same bytes: they must still be there.
    expect(bytes.byteLength).toBe(length);
    await v.close();
  });
});
