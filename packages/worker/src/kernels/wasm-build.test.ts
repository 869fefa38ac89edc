import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const packageDir = fileURLToPath(new URL("../../", import.meta.url));

describe("committed wasm binaries", () => {
  it("are byte-identical to a fresh AssemblyScript build of asm/gemm.ts", () => {
    // Rebuilds into a temporary folder and compares; exits 1 naming the stale file.
    const out = execFileSync(process.execPath, ["scripts/build-wasm.mjs", "--check"], {
      cwd: packageDir,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    expect(out).toContain("wasm binaries match their source");
  }, 60_000);
});
