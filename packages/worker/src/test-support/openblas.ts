// Test support: whether the native-blas tests must run here.
import { execFileSync } from "node:child_process";

/**
 * OpenBLAS counts as installed when the dynamic linker knows libopenblas; then the
 * native-blas tests must run (and fail if the addon was not built), never skip.
 */
export const openblasInstalled: boolean = (() => {
  try {
    return /libopenblas\.so/.test(execFileSync("ldconfig", ["-p"], { encoding: "utf8" }));
  } catch {
    return false;
  }
})();
