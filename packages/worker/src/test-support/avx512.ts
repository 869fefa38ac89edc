// Test support: whether the native-avx512 tests can run here.
import { createNativeAvx512Kernel } from "../kernels/native-avx512.js";
import { KernelUnavailableError } from "../kernels/support.js";

/**
 * Why the native-avx512 kernel cannot run here (the CPU lacks AVX-512, or the addon is not
 * built), or undefined when it can. Its tests skip, naming this reason, rather than fail.
 */
export const avx512Unavailable: string | undefined = (() => {
  try {
    createNativeAvx512Kernel();
    return undefined;
  } catch (e) {
    if (e instanceof KernelUnavailableError) return e.reason;
    throw e;
  }
})();
