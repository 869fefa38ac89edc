import { referenceKernel } from "./reference.js";
import { KernelUnavailableError } from "./support.js";
import type { Kernel } from "./types.js";

// A kernel's start-up self-check: before the worker offers a kernel whose code is not the
// reference (our own native code above all), it must agree with the reference on the
// shapes and values where kernels go wrong: 1 × 1 × 1, primes, k not a multiple of the
// vector width, m and n off the register tile, depth beyond one cache block, zero-sized
// dimensions, NaN and ±Inf, subnormal numbers, and a column panel of a wider B.

/** u = 2^-53, the unit roundoff of float64. */
const unitRoundoff = 2 ** -53;

/**
 * How far a kernel's element may be from the reference's: 3u·(k + 2)·S + (k + 1)·2^-1070,
 * S = Σ_p |a_ip|·|b_pj|. Both kernels sum in some order, with or without FMA, so each is
 * within γ_k·S (plus k·2^-1075 of gradual underflow) of the exact product, and they are
 * within twice that of each other; this is the element-wise form of the tolerance the
 * coordinator's verification uses (docs/verification.md, T_i).
 */
function tolerance(k: number, magnitude: number): number {
  return 3 * unitRoundoff * (k + 2) * magnitude + (k + 1) * 2 ** -1070;
}

/** A small deterministic generator: the check must be the same on every start. */
function values(len: number, seed: number, value: (x: number, i: number) => number): Float64Array {
  let x = seed >>> 0 || 1;
  return Float64Array.from({ length: len }, (_, i) => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return value(x / 2 ** 32 - 0.5, i);
  });
}

/** One product the kernel must get right. */
interface Case {
  readonly label: string;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly a: Float64Array;
  readonly b: Float64Array;
  /** True where every sum is exact (small integers): the bits must equal the reference's. */
  readonly exact?: boolean;
}

/** Entries of mixed sizes over ±40 binades, signs both ways. */
const wide = (x: number, i: number) => x * 2 ** ((i * 7) % 81) * 2 ** -40;
const unit = (x: number) => x;
const ints = (x: number) => Math.round(x * 32);

function randomCase(label: string, m: number, n: number, k: number, seed: number, value = wide): Case {
  return { label, m, n, k, a: values(m * k, seed, value), b: values(k * n, seed + 1, value) };
}

/** NaN in one row of A, +Inf and -Inf in one row of B (one infinite term per sum). */
function nonFiniteCase(): Case {
  const [m, n, k] = [11, 29, 13];
  const c = randomCase("NaN and ±Inf", m, n, k, 41, unit);
  c.a[3 * k + 5] = Number.NaN; // row 3 of C: NaN
  c.b[7 * n + 4] = Number.POSITIVE_INFINITY; // column 4: ±Inf by the sign of a_i7, NaN where a_i7 = 0
  c.b[7 * n + 25] = Number.NEGATIVE_INFINITY; // column 25
  c.a[8 * k + 7] = 0; // row 8: 0 × Inf = NaN in columns 4 and 25
  return c;
}

/** Products and sums in the subnormal range, where a kernel that flushes them to zero fails. */
function subnormalCase(): Case {
  const [m, n, k] = [9, 26, 10];
  return {
    label: "subnormal numbers",
    m,
    n,
    k,
    // even rows of A: subnormal numbers themselves (below 2^-1051); odd rows: tiny normals (about 2^-530)
    a: values(m * k, 51, (x, i) => (Math.floor(i / k) % 2 === 0 ? x * 2 ** -1050 : (1 + x) * 2 ** -530)),
    // even columns of B: ordinary numbers, so even rows of C are sums of subnormals; odd
    // columns: tiny normals, so odd rows × odd columns multiply two normals into a subnormal
    b: values(k * n, 52, (x, i) => ((i % n) % 2 === 0 ? 1 + x : (1.5 + x) * 2 ** -530)),
  };
}

function cases(): Case[] {
  return [
    randomCase("1×1×1", 1, 1, 1, 1),
    randomCase("primes", 7, 13, 11, 2),
    randomCase("primes", 97, 89, 101, 3),
    randomCase("k below the vector width", 5, 9, 3, 4),
    randomCase("k = 1", 17, 31, 1, 5),
    randomCase("m, n off the register tile, odd k", 9, 25, 17, 6),
    randomCase("one row, one column", 1, 37, 45, 7),
    randomCase("one column", 45, 1, 37, 8),
    randomCase("depth beyond one cache block", 19, 27, 601, 9, unit),
    { ...randomCase("exact sums (integers)", 33, 50, 513, 10, ints), exact: true },
    { ...randomCase("exact sums (integers), rows beyond one cache block", 211, 53, 40, 11, ints), exact: true },
    { ...randomCase("k = 0", 3, 5, 0, 12), exact: true },
    { ...randomCase("m = 0", 0, 5, 4, 13), exact: true },
    { ...randomCase("n = 0", 4, 0, 5, 14), exact: true },
    nonFiniteCase(),
    subnormalCase(),
  ];
}

/** The first element where `got` and `want` disagree for this case, described; or undefined. */
function firstDisagreement(c: Case, got: Float64Array, want: Float64Array): string | undefined {
  const { m, n, k, a, b } = c;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const g = got[i * n + j] as number;
      const w = want[i * n + j] as number;
      let ok: boolean;
      if (c.exact || !Number.isFinite(w)) ok = Object.is(g, w) || (Number.isNaN(g) && Number.isNaN(w));
      else {
        let magnitude = 0;
        for (let p = 0; p < k; p++) magnitude += Math.abs(a[i * k + p] as number) * Math.abs(b[p * n + j] as number);
        ok = Math.abs(g - w) <= tolerance(k, magnitude);
      }
      if (!ok) return `${m}×${n}×${k} (${c.label}): c[${i}][${j}] = ${g}, the reference gives ${w}`;
    }
  }
  return undefined;
}

/**
 * Runs a kernel against the {@link referenceKernel} on awkward shapes and values: within
 * the verification's rounding tolerance for ordinary sums, bit for bit where the sums are
 * exact, with k = 0 giving +0, the same NaN and ±Inf, gradual underflow kept, the whole
 * output written, repeated calls giving the same bits, and `gemmStrided` (where the kernel
 * has it) giving the bits of `gemm`. Takes about 0.1 s (60–130 ms measured on a busy machine).
 *
 * @returns undefined when the kernel agrees, else the first disagreement, e.g.
 *   `"7×13×11 (primes): c[2][5] = 0.25, the reference gives 0.5"`.
 */
export function selfCheckKernel(kernel: Kernel): string | undefined {
  for (const c of cases()) {
    const { m, n, k, a, b } = c;
    const want = new Float64Array(m * n);
    referenceKernel.gemm(m, n, k, a, b, want);
    // NaN in the output: a kernel must write every element, never accumulate into it.
    const got = new Float64Array(m * n).fill(Number.NaN);
    try {
      kernel.gemm(m, n, k, a, b, got);
    } catch (e) {
      return `${m}×${n}×${k} (${c.label}) threw ${e instanceof Error ? e.message : String(e)}`;
    }
    const wrong = firstDisagreement(c, got, want);
    if (wrong !== undefined) return wrong;
    const again = new Float64Array(m * n).fill(Number.NaN);
    kernel.gemm(m, n, k, a, b, again);
    if (!sameBits(again, got)) return `${m}×${n}×${k} (${c.label}): a second call gave other bits`;
  }
  return checkStrided(kernel);
}

/** `gemmStrided` on a column panel of a wider B must give the bits of `gemm` on the panel copied out. */
function checkStrided(kernel: Kernel): string | undefined {
  if (kernel.gemmStrided === undefined) return undefined;
  const [m, n, k, ldb, col] = [13, 27, 300, 61, 5];
  const a = values(m * k, 61, wide);
  const wideB = values(k * ldb, 62, wide);
  const panel = new Float64Array(k * n);
  for (let p = 0; p < k; p++) panel.set(wideB.subarray(p * ldb + col, p * ldb + col + n), p * n);
  const want = new Float64Array(m * n);
  kernel.gemm(m, n, k, a, panel, want);
  const got = new Float64Array(m * n).fill(Number.NaN);
  kernel.gemmStrided(m, n, k, a, wideB.subarray(col), ldb, got);
  return sameBits(got, want) ? undefined : `${m}×${n}×${k} column panel of a ${ldb}-wide B: other bits than gemm`;
}

function sameBits(x: Float64Array, y: Float64Array): boolean {
  const bx = new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  const by = new Uint8Array(y.buffer, y.byteOffset, y.byteLength);
  return bx.length === by.length && bx.every((v, i) => v === by[i]);
}

/**
 * The kernel itself if {@link selfCheckKernel} passes.
 *
 * @throws KernelUnavailableError `"<name> unavailable: failed its start-up self-check: …"`
 *   otherwise: the worker does not offer it, and logs that one line.
 */
export function selfChecked(kernel: Kernel): Kernel {
  const wrong = selfCheckKernel(kernel);
  if (wrong !== undefined) throw new KernelUnavailableError(kernel.name, `failed its start-up self-check: ${wrong}`);
  return kernel;
}
