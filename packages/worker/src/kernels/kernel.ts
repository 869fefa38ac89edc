import { type KernelName, kernelNames } from "./names.js";
import { createNativeAvx512Kernel } from "./native-avx512.js";
import { createNativeBlasKernel } from "./native-blas.js";
import { referenceKernel } from "./reference.js";
import { selfChecked } from "./self-check.js";
import { KernelUnavailableError } from "./support.js";
import type { Kernel } from "./types.js";
import { createWasmSimdKernel } from "./wasm-simd.js";

export type { Kernel, StopFlag } from "./types.js";

// The registry is a fixed table: kernels are code, not configuration. Each entry
// creates the kernel for the calling thread, or throws KernelUnavailableError. Our own
// native code is offered only once it agrees with the reference (self-check.ts).
const factories: Readonly<Record<KernelName, () => Kernel>> = {
  "native-avx512": () => selfChecked(createNativeAvx512Kernel()),
  "native-blas": createNativeBlasKernel,
  "wasm-simd": () => createWasmSimdKernel(),
  reference: () => referenceKernel,
};

// One instance per kernel per thread (module state is per thread): the WebAssembly
// memory and the loaded addon are reused by every product the thread runs. A kernel
// that is unavailable stays so, and its error is kept to be thrown again.
const instances = new Map<KernelName, Kernel | KernelUnavailableError>();

function instance(name: KernelName): Kernel | KernelUnavailableError {
  let k = instances.get(name);
  if (k === undefined) {
    try {
      k = factories[name]();
    } catch (e) {
      k = e instanceof KernelUnavailableError ? e : new KernelUnavailableError(name, String(e), { cause: e });
    }
    instances.set(name, k);
  }
  return k;
}

/**
 * This thread's instance of a kernel, created at the first call.
 *
 * @throws RangeError if no kernel has that name, or KernelUnavailableError if it cannot
 *   run here (e.g. `native-blas` without OpenBLAS, `native-avx512` on a CPU without
 *   AVX-512 or after a failed self-check).
 */
export function createKernel(name: string): Kernel {
  if (!(kernelNames as readonly string[]).includes(name)) {
    throw new RangeError(`unknown kernel "${name}" (known: ${kernelNames.join(", ")})`);
  }
  const k = instance(name as KernelName);
  if (k instanceof KernelUnavailableError) throw k;
  return k;
}

/** A kernel that was asked for but cannot run here, and why. */
export interface UnavailableKernel {
  readonly name: KernelName;
  /** E.g. "the addon is not built (…)"; the log line is `${name} unavailable: ${reason}`. */
  readonly reason: string;
}

/** What {@link selectKernels} found: the kernels to advertise, and those left out. */
export interface KernelSelection {
  /** Available kernels in preference order: what {@link listKernels} returns from now on. */
  readonly kernels: readonly Kernel[];
  /** Kernels asked for (or, for `"auto"`, known) that cannot run here. */
  readonly unavailable: readonly UnavailableKernel[];
}

let selected: readonly Kernel[] | undefined;

/**
 * Chooses the kernels this process advertises (the `worker --kernels` flag); it sets
 * what {@link listKernels} returns. `"auto"` means every available kernel, fastest
 * first ({@link kernelNames} order: native-avx512, native-blas, wasm-simd, reference); a list keeps
 * its own order. Kernels that cannot run are left out and reported in `unavailable`,
 * for the caller to log or to refuse.
 *
 * @throws RangeError for an unknown or repeated name, or an empty list.
 */
export function selectKernels(names: "auto" | readonly string[]): KernelSelection {
  const wanted = names === "auto" ? kernelNames : names;
  if (wanted.length === 0) throw new RangeError("no kernel selected");
  const kernels: Kernel[] = [];
  const unavailable: UnavailableKernel[] = [];
  for (const [i, name] of wanted.entries()) {
    if (wanted.indexOf(name) !== i) throw new RangeError(`kernel "${name}" is listed twice`);
    try {
      kernels.push(createKernel(name));
    } catch (e) {
      if (!(e instanceof KernelUnavailableError)) throw e;
      unavailable.push({ name: name as KernelName, reason: e.reason });
    }
  }
  selected = kernels;
  return { kernels, unavailable };
}

/**
 * The kernels this process offers, in the order the worker advertises them (fastest
 * first): those chosen by {@link selectKernels}, or every available one.
 */
export function listKernels(): readonly Kernel[] {
  return selected ?? kernelNames.map(instance).filter((k): k is Kernel => !(k instanceof KernelUnavailableError));
}
