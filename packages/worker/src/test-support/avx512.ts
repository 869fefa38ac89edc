// Test support: whether the native-avx512 tests can run here.
import { readFileSync } from "node:fs";
import { createNativeAvx512Kernel } from "../kernels/native-avx512.js";
import { KernelUnavailableError } from "../kernels/support.js";

/** The AVX-512 features the kernel needs, as /proc/cpuinfo names them (undefined off Linux). */
function cpuHasAvx512(): boolean | undefined {
  let info: string;
  try {
    info = readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return undefined;
  }
  const flags = new Set((/^flags\s*:(.*)$/m.exec(info)?.[1] ?? "").trim().split(/\s+/));
  return ["avx512f", "avx512dq", "avx512vl", "fma"].every((f) => flags.has(f));
}

/**
 * Why the native-avx512 kernel cannot run here, or undefined when it can. Its tests skip,
 * naming the reason, only when the CPU lacks AVX-512 (by /proc/cpuinfo, or off Linux by the
 * addon's own check). On a CPU with AVX-512, an addon that is not built or does not load,
 * or a CPU check that disagrees with /proc/cpuinfo, fails them instead: a broken build
 * must not pass as a machine without AVX-512.
 */
export const avx512Unavailable: string | undefined = (() => {
  try {
    createNativeAvx512Kernel();
    return undefined;
  } catch (e) {
    if (!(e instanceof KernelUnavailableError)) throw e;
    const cpuLacks = e.reason.includes("CPU lacks");
    const has = cpuHasAvx512();
    if (has === false || (has === undefined && cpuLacks)) return e.reason;
    throw new Error(
      cpuLacks
        ? `native-avx512 says ${e.reason}, but /proc/cpuinfo lists avx512f, avx512dq, avx512vl and fma`
        : `native-avx512 cannot run on this AVX-512 CPU: ${e.reason}`,
      { cause: e },
    );
  }
})();
