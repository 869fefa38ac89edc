// The verifier's arithmetic: every product of Freivalds' check (projection of B, A pass of
// a row band, Ĉ pass of a tile) as one WebAssembly SIMD routine, rows times a panel of
// PANEL_WIDTH interleaved columns (asm/panel.ts, committed as wasm/panel-relaxed.wasm, with
// fused multiply-adds, and wasm/panel-simd.wasm for runtimes without relaxed SIMD). One
// instance per thread; its memory grows to the largest operands it has staged.
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { PANEL_WIDTH } from "@dce/core";

/** The few WebAssembly JS-API members used here (the ES2022 lib has no types for them). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  readonly Module: new (bytes: Uint8Array) => object;
  readonly Instance: new (module: object, imports: object) => { readonly exports: unknown };
}

/** The exports of asm/panel.ts (see that file for the contracts). */
interface PanelExports {
  readonly memory: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  probeProduct(x: number, ldx: number, rows: number, len: number, v: number, y: number, ldy: number): void;
  bandProduct(a: number, m: number, k: number, w: number, blocks: number, y: number): void;
  projectRows(
    b: number,
    rows: number,
    cols: number,
    tileCols: number,
    probes: number,
    w: number,
    k: number,
    firstRow: number,
  ): void;
  absSums(x: number, ldx: number, rows: number, len: number, out: number, outStride: number): void;
}

/**
 * Panels of the projection in pair layout (see asm/panel.ts `bandProduct`): two per pair of
 * column blocks, the last pair padded with a block of zeros.
 */
export function projectionPanels(blocks: number): number {
  return 2 * Math.ceil(blocks / 2);
}

/**
 * Where block J's sums sit in a row of a band's sums (panels × 8 values): its rounds at
 * `rounds` … `rounds` + 6, its magnitude Ŝ at `scale`.
 */
export function bandSumsOffsets(jb: number): { rounds: number; scale: number } {
  const pair = 16 * (jb >> 1);
  return jb & 1 ? { rounds: pair + 7, scale: pair + 15 } : { rounds: pair, scale: pair + 14 };
}

/** Reads `rows` rows starting at `firstRow` of a matrix into `into` (exactly its length). */
export type ReadRows = (into: Float64Array, firstRow: number, rows: number) => void;

/** The verifier's products on one thread. Every array is row-major float64. */
export interface PanelKernel {
  /**
   * The projection of B (k × cols, read through `read` in chunks of rows): for each column
   * block J of `tileCols` columns, w_J[l][t] = B[l, J]·panel_J column t, with `probes` the
   * probe panel (cols × 8, see `probePanel`). Fills `w` (projectionPanels(blocks) × k × 8)
   * in the pair layout of asm/panel.ts `bandProduct`.
   */
  project(read: ReadRows, k: number, cols: number, tileCols: number, probes: Float64Array, w: Float64Array): void;
  /**
   * The A pass of rows [rowStart, rowEnd) of A (× k, read through `read`), for every
   * column block, from `w` in pair layout: y = (rowEnd − rowStart) × panels × 8 (block J's
   * sums of row i at i·panels·8 + {@link bandSumsOffsets}), aAbs[i] = Σ_l |a_il|.
   */
  band(
    read: ReadRows,
    rowStart: number,
    rowEnd: number,
    k: number,
    blocks: number,
    w: Float64Array,
    y: Float64Array,
    aAbs: Float64Array,
  ): void;
  /**
   * The Ĉ pass of a tile (m × n, raw little-endian float64 bytes): out[i·8 + t] = Ĉ_i ·
   * probe panel rows [colStart, colStart + n) column t (column 7: Σ_j |Ĉ_ij|).
   */
  tile(bytes: Uint8Array, m: number, n: number, probes: Float64Array, colStart: number, out: Float64Array): void;
}

/** Most bytes of A or B staged at once: larger operands are read in chunks of rows. */
const CHUNK_BYTES = 8 << 20;
const pageBytes = 65_536;
/** Where staged operands start, in doubles: the first page holds the module's static data. */
const base = pageBytes / 8;
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
let compiled: object | undefined;

/**
 * The binary this runtime runs: the relaxed one (f64x2.relaxed_madd) where it validates,
 * after turning on `--experimental-wasm-relaxed-simd` on Node.js 20 (process-wide; Node.js
 * 22 ships relaxed SIMD and would reject the flag's name), the plain one otherwise. Both
 * are covered by the check's bound, which holds with or without fused multiply-adds.
 */
function loadBinary(): Uint8Array {
  const read = (file: string) => new Uint8Array(readFileSync(new URL(`../../wasm/${file}`, import.meta.url)));
  const relaxed = read("panel-relaxed.wasm");
  if (wasm.validate(relaxed)) return relaxed;
  try {
    setFlagsFromString("--experimental-wasm-relaxed-simd");
    if (wasm.validate(relaxed)) return relaxed;
  } catch {
    // No such flag here: the plain binary it is.
  }
  return read("panel-simd.wasm");
}

/**
 * A kernel with its own WebAssembly instance (create one per thread).
 * @throws if the binary cannot be read or compiled (a broken installation).
 */
export function createPanelKernel(): PanelKernel {
  compiled ??= new wasm.Module(loadBinary());
  const x = new wasm.Instance(compiled, {}).exports as PanelExports;
  /** A view of the memory, grown to at least `bytes` (growing detaches old views). */
  const heap = (bytes: number): Float64Array => {
    const have = x.memory.buffer.byteLength;
    if (bytes > have) x.memory.grow(Math.ceil((bytes - have) / pageBytes));
    return new Float64Array(x.memory.buffer);
  };
  const W = PANEL_WIDTH;
  return {
    project(read, k, cols, tileCols, probes, w) {
      // Layout: probes | w, one panel per block | a chunk of rows of B.
      const blocks = Math.ceil(cols / tileCols);
      const probesAt = base;
      const wAt = probesAt + cols * W;
      const bAt = wAt + blocks * k * W;
      const chunkRows = Math.max(1, Math.min(k, Math.floor(CHUNK_BYTES / (Math.max(1, cols) * 8))));
      let mem = heap((bAt + chunkRows * cols) * 8);
      mem.set(probes.subarray(0, cols * W), probesAt);
      for (let l0 = 0; l0 < k; l0 += chunkRows) {
        const rows = Math.min(chunkRows, k - l0);
        read(mem.subarray(bAt, bAt + rows * cols), l0, rows);
        x.projectRows(bAt * 8, rows, cols, tileCols, probesAt * 8, wAt * 8, k, l0);
        mem = heap(0);
      }
      toPairLayout(mem.subarray(wAt, wAt + blocks * k * W), k, blocks, w);
    },
    band(read, rowStart, rowEnd, k, blocks, w, y, aAbs) {
      // Layout: w | a chunk of rows of A | their sums | their absolute sums.
      const m = rowEnd - rowStart;
      const wAt = base;
      const aAt = wAt + w.length;
      const chunkRows = Math.max(1, Math.min(m, Math.floor(CHUNK_BYTES / (Math.max(1, k) * 8))));
      const yAt = aAt + chunkRows * k;
      const panels = projectionPanels(blocks);
      const absAt = yAt + chunkRows * panels * W;
      let mem = heap((absAt + chunkRows) * 8);
      mem.set(w, wAt);
      for (let i0 = 0; i0 < m; i0 += chunkRows) {
        const rows = Math.min(chunkRows, m - i0);
        read(mem.subarray(aAt, aAt + rows * k), rowStart + i0, rows);
        x.bandProduct(aAt * 8, rows, k, wAt * 8, panels, yAt * 8);
        x.absSums(aAt * 8, k, rows, k, absAt * 8, 1);
        mem = heap(0);
        y.set(mem.subarray(yAt, yAt + rows * panels * W), i0 * panels * W);
        aAbs.set(mem.subarray(absAt, absAt + rows), i0);
      }
    },
    tile(bytes, m, n, probes, colStart, out) {
      // Layout: the probe rows of the tile's columns | the tile | its sums.
      const probesAt = base;
      const tileAt = probesAt + n * W;
      const outAt = tileAt + m * n;
      const mem = heap((outAt + m * W) * 8);
      mem.set(probes.subarray(colStart * W, (colStart + n) * W), probesAt);
      new Uint8Array(mem.buffer, tileAt * 8, m * n * 8).set(bytes.subarray(0, m * n * 8));
      x.probeProduct(tileAt * 8, n, m, n, probesAt * 8, outAt * 8, W);
      out.set(mem.subarray(outAt, outAt + m * W));
    },
  };
}

/**
 * Rewrites a projection from one panel per block (`plain`: blocks × k × [w_0 … w_6, s]) to
 * the pair layout of asm/panel.ts `bandProduct` (`out`: projectionPanels(blocks) × k × 8).
 */
function toPairLayout(plain: Float64Array, k: number, blocks: number, out: Float64Array): void {
  const W = PANEL_WIDTH;
  out.fill(0);
  for (let jb = 0; jb < blocks; jb++) {
    const p = jb >> 1;
    const first = 2 * p * k * W;
    const second = (2 * p + 1) * k * W;
    for (let l = 0; l < k; l++) {
      const src = (jb * k + l) * W;
      const a = first + l * W;
      const b = second + l * W;
      if ((jb & 1) === 0) {
        for (let t = 0; t < 7; t++) out[a + t] = plain[src + t] as number;
        out[b + 6] = plain[src + 7] as number;
      } else {
        out[a + 7] = plain[src] as number;
        for (let t = 1; t < 7; t++) out[b + t - 1] = plain[src + t] as number;
        out[b + 7] = plain[src + 7] as number;
      }
    }
  }
}
