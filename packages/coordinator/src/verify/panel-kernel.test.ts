import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { bandSumsOffsets, createPanelKernel, projectionPanels } from "./panel-kernel.js";

const packageDir = fileURLToPath(new URL("../../", import.meta.url));

describe("committed verifier wasm binaries", () => {
  it("are byte-identical to a fresh AssemblyScript build of asm/panel.ts", () => {
    // Rebuilds into a temporary folder and compares; exits 1 naming the stale file.
    const out = execFileSync(process.execPath, ["scripts/build-wasm.mjs", "--check"], {
      cwd: packageDir,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    expect(out).toContain("wasm/panel-simd.wasm matches its source");
    expect(out).toContain("wasm/panel-relaxed.wasm matches its source");
  }, 60_000);
});

describe("panel kernel", () => {
  it("projects B per column block and finds each block's sums of a band where bandSumsOffsets says", () => {
    // B = 2 × 3 in blocks of one column; probes: column j's rounds are j + t/8, its column 7 is 1.
    const k = 2;
    const cols = 3;
    const b = Float64Array.of(1, -2, 3, 4, 5, -6);
    const probes = Float64Array.from({ length: cols * 8 }, (_, i) => (i % 8 === 7 ? 1 : Math.floor(i / 8) + (i % 8) / 8));
    const panels = projectionPanels(cols);
    expect(panels).toBe(4);
    const w = new Float64Array(panels * k * 8);
    const kernel = createPanelKernel();
    kernel.project((into, first) => into.set(b.subarray(first * cols, first * cols + into.length)), k, cols, 1, probes, w);
    // A = one row [1, -1]: its sums against block J are Σ_l a_l·b_lJ·r_{J,t}, and Σ_l |a_l|·|b_lJ|.
    const a = Float64Array.of(1, -1);
    const y = new Float64Array(panels * 8);
    const aAbs = new Float64Array(1);
    kernel.band((into) => into.set(a), 0, 1, k, cols, w, y, aAbs);
    expect(aAbs[0]).toBe(2);
    for (let jb = 0; jb < cols; jb++) {
      const at = bandSumsOffsets(jb);
      const colSum = (b[jb] as number) - (b[cols + jb] as number);
      for (let t = 0; t < 7; t++) expect(y[at.rounds + t]).toBeCloseTo(colSum * (jb + t / 8), 12);
      expect(y[at.scale]).toBe(Math.abs(b[jb] as number) + Math.abs(b[cols + jb] as number));
    }
  });
});
