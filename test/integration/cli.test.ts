import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BIN, type Cluster, startCluster } from "../support/cluster.js";

// Drives the engine only through its bins, as a new user would: `coordinator`,
// `worker` and `dce` with .npy files written and checked by NumPy.

const dir = mkdtempSync(join(tmpdir(), "dce-cli-"));
const py = (code: string) => execFileSync("python3", ["-c", code], { cwd: dir, encoding: "utf8" });

function dce(cluster: Cluster, args: string[]) {
  const r = spawnSync(process.execPath, [BIN.dce, ...args], {
    cwd: dir,
    encoding: "utf8",
    env: { ...process.env, DCE_COORDINATOR: cluster.url, DCE_CA: cluster.caPath, DCE_TOKEN: cluster.token },
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs dce with its stdout a pipe whose reader has gone (as `dce … | head -0` leaves it). */
function dceReaderGone(cluster: Cluster, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return readerGone(BIN.dce, args, { DCE_COORDINATOR: cluster.url, DCE_CA: cluster.caPath, DCE_TOKEN: cluster.token });
}

/** Runs a bin with its stdout a pipe whose reader has gone. */
function readerGone(
  bin: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: dir,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.destroy();
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
  return new Promise((resolve) =>
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    }),
  );
}

let one: Cluster;
let three: Cluster;
beforeAll(async () => {
  py(`
import numpy as np
rng = np.random.default_rng(7)
np.save("A.npy", rng.standard_normal((257, 129)))
np.save("B.npy", rng.standard_normal((129, 383)))
np.save("A32.npy", rng.standard_normal((20, 30)).astype(np.float32))
np.save("B30.npy", rng.standard_normal((30, 10)))
np.save("int.npy", np.arange(12, dtype=np.int64).reshape(3, 4))
np.save("AF.npy", rng.standard_normal((129, 257)).T)  # a transposed array: fortran_order True
np.save("BBE.npy", rng.standard_normal((129, 65)).astype(">f8"))
np.save("obj.npy", np.array([[1.0, None]], dtype=object))
np.save("cube.npy", rng.standard_normal((2, 3, 4)))
np.save("empty.npy", np.zeros((0, 4)))
`);
  [one, three] = await Promise.all([startCluster({ workers: 1 }), startCluster({ workers: 3 })]);
});
afterAll(async () => {
  await Promise.all([one?.close(), three?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

describe("dce CLI against real processes", () => {
  test("submit writes a C.npy that agrees with NumPy to 1e-12 and is byte-identical with 1 and 3 workers", () => {
    const r1 = dce(one, ["submit", "A.npy", "B.npy", "-o", "C1.npy", "--tile", "64"]);
    expect(r1.code).toBe(0);
    const jobId = r1.stdout.split("\n")[0] as string;
    expect(jobId).toMatch(/^[0-9a-f-]{36}$/);
    // stderr is not a terminal here: plain progress lines (no bar), then where C went.
    const lines = r1.stderr.trimEnd().split("\n");
    const progress = lines.slice(0, -1);
    expect(lines.at(-1)).toBe("wrote C1.npy (257x383)");
    expect(progress.length).toBeGreaterThanOrEqual(1);
    const shape =
      /^job (\S+) (queued|running|succeeded) (\d+)\/(\d+) shards \((\d+\.\d)%\)( [0-9.]+ shards\/s)?( eta \S+| in \S+)?$/;
    for (const line of progress) {
      const m = shape.exec(line);
      expect(m, line).not.toBeNull();
      expect(m?.[1]).toBe(jobId);
      expect(m?.[4]).toBe("30"); // 5 x 6 tiles of 64
    }
    expect(progress.at(-1)).toMatch(new RegExp(`^job ${jobId} succeeded 30/30 shards \\(100\\.0%\\)( [0-9.]+ shards/s)? in `));
    const r3 = dce(three, ["submit", "A.npy", "B.npy", "-o", "C3.npy", "--tile", "64"]);
    expect(r3.code).toBe(0);
    const rel = Number(
      py(`
import numpy as np
A, B, C = np.load("A.npy"), np.load("B.npy"), np.load("C1.npy")
assert C.dtype == np.float64 and C.shape == (257, 383), (C.dtype, C.shape)
R = A @ B
print(np.linalg.norm(C - R) / np.linalg.norm(R))
`).trim(),
    );
    expect(rel).toBeLessThan(1e-12);
    expect(readFileSync(join(dir, "C3.npy")).equals(readFileSync(join(dir, "C1.npy")))).toBe(true);
  });

  test("float32 input is upcast; --no-wait, status, result and cancel", () => {
    const sub = dce(one, ["submit", "A32.npy", "B30.npy", "--no-wait"]);
    expect(sub.code).toBe(0);
    const id = sub.stdout.trim().split("\n")[0] as string;
    const res = dce(one, ["result", id, "-o", "C32.npy"]);
    expect(res.code).toBe(0);
    const rel = Number(
      py(`
import numpy as np
A, B, C = np.load("A32.npy").astype(np.float64), np.load("B30.npy"), np.load("C32.npy")
print(np.linalg.norm(C - A @ B) / np.linalg.norm(A @ B))
`).trim(),
    );
    expect(rel).toBeLessThan(1e-12);
    const st = dce(one, ["status", id]);
    expect(st.code).toBe(0);
    expect(st.stdout).toContain("succeeded");
    const watch = dce(one, ["watch", id]);
    expect(watch.code).toBe(0);
    expect(watch.stdout).toMatch(new RegExp(`^job ${id} succeeded 1/1 shards \\(100\\.0%\\)`));
    const cancel = dce(one, ["cancel", id]);
    expect(cancel.code).toBe(1);
    expect(cancel.stderr).toMatch(/failed_precondition|FAILED_PRECONDITION|FailedPrecondition/i);
    const missing = dce(one, ["status", "00000000-0000-0000-0000-000000000000"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/not.?found/i);
  });

  test("Fortran-order A times big-endian B gives NumPy's A @ B, written as little-endian C order", () => {
    const r = dce(one, ["submit", "AF.npy", "BBE.npy", "-o", "CFB.npy"]);
    expect(r.code, r.stderr).toBe(0);
    const rel = Number(
      py(`
import numpy as np
from numpy.lib import format as fmt
A, B = np.load("AF.npy"), np.load("BBE.npy")
assert A.flags.f_contiguous and not A.flags.c_contiguous and B.dtype.str == ">f8"
with open("CFB.npy", "rb") as fh:
    fmt.read_magic(fh)
    header = fmt.read_array_header_1_0(fh)
assert header == ((257, 65), False, np.dtype("<f8")), header
C, R = np.load("CFB.npy"), A @ B
print(np.linalg.norm(C - R) / np.linalg.norm(R))
`).trim(),
    );
    expect(rel).toBeLessThan(1e-12);
  });

  test.each([
    ["coordinator", BIN.coordinator],
    ["worker", BIN.worker],
    ["dce", BIN.dce],
  ])("%s --help into a pipe whose reader went away exits 0, without a stack trace", async (_name, bin) => {
    const r = await readerGone(bin, ["--help"]);
    expect(r.stderr).not.toMatch(/EPIPE|Unhandled/);
    expect(r.code).toBe(0);
  });

  test("a reader that goes away is no crash: list exits 0, submit still writes C", async () => {
    for (let i = 0; i < 3; i++) expect(dce(one, ["submit", "A32.npy", "B30.npy", "--no-wait"]).code).toBe(0);
    const list = await dceReaderGone(one, ["list", "--json"]);
    expect(list.stderr).not.toMatch(/EPIPE|Unhandled/);
    expect(list.code).toBe(0);
    const submit = await dceReaderGone(one, ["submit", "A32.npy", "B30.npy", "-o", "CGONE.npy"]);
    expect(submit.stderr).not.toMatch(/EPIPE|Unhandled/);
    expect(submit.code).toBe(0);
    const err = py(`
import numpy as np
C = np.load("CGONE.npy"); R = np.load("A32.npy").astype(np.float64) @ np.load("B30.npy")
print(abs(C - R).max())
`).trim();
    expect(Number(err)).toBeLessThan(1e-12);
  });

  test.each([
    ["int.npy", "B30.npy", /dtype/],
    ["obj.npy", "B30.npy", /dtype '\|O' is not supported/],
    ["cube.npy", "B30.npy", /2-D|dimension|shape/i],
    ["A.npy", "B30.npy", /inner dimensions/],
    ["empty.npy", "B30.npy", /zero|empty|at least 1/i],
    ["nope.npy", "B30.npy", /nope\.npy/],
  ])("bad input %s x %s exits 2 with one line", (a, b, pattern) => {
    const r = dce(one, ["submit", a, b, "-o", "X.npy"]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(pattern);
  });
});
