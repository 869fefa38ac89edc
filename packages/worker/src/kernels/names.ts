/**
 * Every kernel this build knows, fastest first: the order a worker advertises the
 * available ones in with `--kernels auto`. Kept apart from the implementations so
 * that the argument parser can validate names without loading any kernel.
 */
export const kernelNames = ["native-avx512", "native-blas", "wasm-simd", "reference"] as const;

/** One of {@link kernelNames}. */
export type KernelName = (typeof kernelNames)[number];

/** True if `name` is one of {@link kernelNames}. */
export function isKernelName(name: string): name is KernelName {
  return (kernelNames as readonly string[]).includes(name);
}
