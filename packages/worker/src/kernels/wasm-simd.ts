import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { checkGemmShape } from "./shape.js";
import { KernelUnavailableError, packageRootUrl } from "./support.js";
import type { Kernel } from "./types.js";

/** Registry name of the WebAssembly SIMD kernel. */
export const wasmSimdName = "wasm-simd";

/** Options for {@link createWasmSimdKernel}. */
export interface WasmSimdKernelOptions {
  /**
   * Whether to use the fused multiply-add binary: `"auto"` (default) uses it when the
   * runtime has relaxed SIMD and its `f64x2.relaxed_madd` really fuses on this CPU;
   * `false` always uses plain f64x2 multiply then add; `true` requires FMA.
   */
  readonly fma?: boolean | "auto";
  /**
   * Most bytes of A, B and C blocks staged in the module's memory at once; default
   * 256 MiB. A larger product runs in blocks of at most this size, with the same bits
   * (the kernel's sums do not depend on its blocking).
   */
  readonly chunkBytes?: number;
}

/** The few WebAssembly JS-API members used here (the ES2022 lib has no types for them). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  readonly Module: new (bytes: Uint8Array) => object;
  readonly Instance: new (module: object, imports: object) => { readonly exports: unknown };
}

/** The exports of asm/gemm.ts (see that file for the contract). */
interface GemmExports {
  readonly memory: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  workspaceBytes(): number;
  probeFma(x: number, y: number, z: number): number;
  gemm(
    m: number,
    n: number,
    k: number,
    a: number,
    lda: number,
    b: number,
    ldb: number,
    c: number,
    ldc: number,
    accumulate: number,
    ws: number,
  ): void;
}

/** One of the two committed binaries, compiled once per thread. */
interface Binary {
  readonly bytes: Uint8Array;
  readonly module: object;
  /** First 16 hex digits of the SHA-256 of `bytes`. */
  readonly hash: string;
}

const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
const pageBytes = 65_536;
/** Where staged matrices start: page 0 is left to the module's static data (none today; its memory starts empty). */
const baseOffset = pageBytes;
const defaultChunkBytes = 256 * 1024 * 1024;

const binaries = new Map<string, Binary | KernelUnavailableError>();

/** Loads and compiles `wasm/<file>` once per thread, or says why it cannot. */
function loadBinary(file: string): Binary | KernelUnavailableError {
  let binary = binaries.get(file);
  if (binary === undefined) {
    try {
      const bytes = new Uint8Array(readFileSync(new URL(`wasm/${file}`, packageRootUrl)));
      binary = {
        bytes,
        module: new wasm.Module(bytes),
        hash: createHash("sha256").update(bytes).digest("hex").slice(0, 16),
      };
    } catch (e) {
      binary = new KernelUnavailableError(wasmSimdName, `cannot load wasm/${file}: ${errorText(e)}`, { cause: e });
    }
    binaries.set(file, binary);
  }
  return binary;
}

/**
 * A module as small as possible that uses `f64x2.relaxed_madd`: `(x, y, z) => lane 0 of
 * relaxed_madd(splat x, splat y, splat z)`. Validating it tells whether the runtime
 * has relaxed SIMD without compiling the kernel.
 */
const relaxedProbe = Uint8Array.of(
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // magic, version 1
  ...[0x01, 0x08, 0x01, 0x60, 0x03, 0x7c, 0x7c, 0x7c, 0x01, 0x7c], // type: (f64 f64 f64) -> f64
  ...[0x03, 0x02, 0x01, 0x00], // function 0 has type 0
  ...[0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00], // export "f"
  ...[0x0a, 0x16, 0x01, 0x14, 0x00], // code: one body of 20 bytes, no locals
  ...[0x20, 0x00, 0xfd, 0x14, 0x20, 0x01, 0xfd, 0x14, 0x20, 0x02, 0xfd, 0x14], // 3 × local.get, f64x2.splat
  ...[0xfd, 0x87, 0x02, 0xfd, 0x21, 0x00, 0x0b], // f64x2.relaxed_madd, f64x2.extract_lane 0, end
);

let relaxedSupport: boolean | undefined;

/**
 * Whether this runtime validates relaxed SIMD. Node.js 22 ships it; Node.js 20 (V8 11.3)
 * has it behind `--experimental-wasm-relaxed-simd`, which is turned on here, process-wide,
 * only when the module does not validate without it (Node.js 22 would reject the flag's
 * name). Every thread of the process then agrees, which the fingerprint relies on.
 */
function hasRelaxedSimd(): boolean {
  if (relaxedSupport === undefined) {
    relaxedSupport = wasm.validate(relaxedProbe);
    if (!relaxedSupport) {
      try {
        setFlagsFromString("--experimental-wasm-relaxed-simd");
        relaxedSupport = wasm.validate(relaxedProbe);
      } catch {
        relaxedSupport = false;
      }
    }
  }
  return relaxedSupport;
}

/** The binary this thread uses and whether it fuses, by the rules of {@link WasmSimdKernelOptions.fma}. */
function chooseBinary(fma: boolean | "auto"): { binary: Binary; fused: boolean } {
  const plain = loadBinary("gemm-simd.wasm");
  if (plain instanceof KernelUnavailableError) throw plain;
  if (!wasm.validate(plain.bytes)) throw new KernelUnavailableError(wasmSimdName, "this runtime has no WebAssembly SIMD");
  if (fma === false) return { binary: plain, fused: false };
  let why = "this runtime has no WebAssembly relaxed SIMD";
  if (hasRelaxedSimd()) {
    const relaxed = loadBinary("gemm-relaxed.wasm");
    if (relaxed instanceof KernelUnavailableError) throw relaxed;
    // relaxed_madd may round once (FMA) or twice (multiply, then add) depending on the CPU.
    // Use it only where it fuses: the unfused case is exactly the plain binary's arithmetic.
    // (1 + 2^-52)(1 - 2^-52) - 1 is -2^-104 when fused and 0 when the product is rounded first.
    const probe = instantiate(relaxed).probeFma(1 + 2 ** -52, 1 - 2 ** -52, -1);
    if (probe !== 0) return { binary: relaxed, fused: true };
    why = "relaxed_madd does not fuse on this CPU";
  }
  if (fma === true) throw new KernelUnavailableError(wasmSimdName, `FMA required but ${why}`);
  return { binary: plain, fused: false };
}

function instantiate(binary: Binary): GemmExports {
  return new wasm.Instance(binary.module, {}).exports as GemmExports;
}

/**
 * Creates a `wasm-simd` kernel: a blocked, register-tiled float64 product compiled to
 * WebAssembly SIMD from `asm/gemm.ts` (5 × 4 register tile of f64x2 accumulators, packed
 * A and B panels, cache blocks of 256 deep). Each instance owns a WebAssembly memory that
 * grows to the largest product it has run (at most about `chunkBytes` plus 2.4 MiB of
 * workspace); create one per thread.
 *
 * Each `c[i][j]` is summed in ascending `k` from +0, one rounding per multiply and per
 * add, or one per fused multiply-add with FMA. So its bits depend only on row `i` of `a`
 * and column `j` of `b`, never on `m`, `n` or the tiling; without FMA they equal the
 * reference kernel's. The fingerprint is `wasm-simd/<sha-256 of the binary, 16 hex
 * digits>/fma` or `/nofma`.
 *
 * @throws KernelUnavailableError if the runtime has no WebAssembly SIMD, the binary
 *   cannot be read, or `fma: true` is asked for where there is no FMA.
 */
export function createWasmSimdKernel(options: WasmSimdKernelOptions = {}): Kernel {
  const chunkBytes = options.chunkBytes ?? defaultChunkBytes;
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 3 * 8) {
    throw new RangeError(`chunkBytes must be an integer >= 24, got ${chunkBytes}`);
  }
  const { binary, fused } = chooseBinary(options.fma ?? "auto");
  // Instantiated at the first product: a kernel that is only advertised costs no memory.
  let exports: GemmExports | undefined;
  return {
    name: wasmSimdName,
    fingerprint: `${wasmSimdName}/${binary.hash}/${fused ? "fma" : "nofma"}`,
    gemm(m, n, k, a, b, c) {
      checkGemmShape(m, n, k, a, b, c);
      if (m === 0 || n === 0) return;
      exports ??= instantiate(binary);
      run(exports, chunkBytes, m, n, k, a, b, c);
    },
  };
}

/**
 * Stages the operands in the module's memory and runs the product, in one call when
 * A, B and C fit in `chunkBytes`, otherwise block by block: square blocks of edge `e`
 * with 3e² doubles ≤ `chunkBytes`, accumulating C over the blocks of k in order.
 */
function run(
  x: GemmExports,
  chunkBytes: number,
  m: number,
  n: number,
  k: number,
  a: Float64Array,
  b: Float64Array,
  c: Float64Array,
): void {
  const ws = baseOffset;
  const data = ws + x.workspaceBytes();
  if ((m * k + k * n + m * n) * 8 <= chunkBytes) {
    const aAt = data;
    const bAt = aAt + m * k * 8;
    const cAt = bAt + k * n * 8;
    const heap = reserve(x, cAt + m * n * 8);
    heap.set(a.subarray(0, m * k), aAt / 8);
    heap.set(b.subarray(0, k * n), bAt / 8);
    x.gemm(m, n, k, aAt, k, bAt, n, cAt, n, 0, ws);
    c.set(heap.subarray(cAt / 8, cAt / 8 + m * n));
    return;
  }
  const e = Math.max(1, Math.floor(Math.sqrt(chunkBytes / 24)));
  for (let j0 = 0; j0 < n; j0 += e) {
    const nb = Math.min(e, n - j0);
    for (let p0 = 0; p0 < Math.max(k, 1); p0 += e) {
      const kb = Math.min(e, k - p0);
      const bAt = data;
      const aAt = bAt + kb * nb * 8;
      const cAt = aAt + e * kb * 8;
      const heap = reserve(x, cAt + e * nb * 8);
      copyBlock(b, n, p0, j0, kb, nb, heap, bAt / 8);
      for (let i0 = 0; i0 < m; i0 += e) {
        const mb = Math.min(e, m - i0);
        copyBlock(a, k, i0, p0, mb, kb, heap, aAt / 8);
        // Blocks after the first of k continue the sums already in C.
        if (p0 > 0) copyBlock(c, n, i0, j0, mb, nb, heap, cAt / 8);
        x.gemm(mb, nb, kb, aAt, kb, bAt, nb, cAt, nb, p0 > 0 ? 1 : 0, ws);
        for (let i = 0; i < mb; i++) {
          const from = cAt / 8 + i * nb;
          c.set(heap.subarray(from, from + nb), (i0 + i) * n + j0);
        }
      }
    }
  }
}

/** Copies rows [r0, r0 + rows) × columns [c0, c0 + cols) of `src` (row length `ld`) to `dst` at `at`, packed. */
function copyBlock(
  src: Float64Array,
  ld: number,
  r0: number,
  c0: number,
  rows: number,
  cols: number,
  dst: Float64Array,
  at: number,
): void {
  for (let i = 0; i < rows; i++) {
    const from = (r0 + i) * ld + c0;
    dst.set(src.subarray(from, from + cols), at + i * cols);
  }
}

/** Grows the memory to at least `bytes` and returns a view of all of it (growing detaches old views). */
function reserve(x: GemmExports, bytes: number): Float64Array {
  const have = x.memory.buffer.byteLength;
  if (bytes > have) x.memory.grow(Math.ceil((bytes - have) / pageBytes));
  return new Float64Array(x.memory.buffer);
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
