import type { Client } from "@connectrpc/connect";
import type { JobService, ShardLease } from "@dce/proto";

// Small jobs with inline inputs, and the tiles an honest worker returns for them, for
// tests that drive the coordinator's services with plain Connect clients.

/** A rows × cols matrix of small integers (exact in float64, so any summation order agrees). */
export function smallIntMatrix(rows: number, cols: number, seed: number): Float64Array {
  const m = new Float64Array(rows * cols);
  for (let i = 0; i < m.length; i++) m[i] = ((i * 7 + seed * 13) % 11) - 5;
  return m;
}

export const bytes = (m: Float64Array) => new Uint8Array(m.buffer, m.byteOffset, m.byteLength);

/** A submitted job and its naive product C (n columns). */
export interface InlineJob {
  readonly jobId: string;
  readonly c: Float64Array;
  readonly n: number;
}

/** Submits A (m × k) · B (k × n) inline with square tiles and the reference kernel. */
export async function submitInline(
  jobs: Client<typeof JobService>,
  dims: { m: number; k: number; n: number; tile: number },
  idempotencyKey = "",
  retentionMs = 0,
): Promise<InlineJob> {
  const { m, k, n, tile } = dims;
  const a = smallIntMatrix(m, k, 1);
  const b = smallIntMatrix(k, n, 2);
  const res = await jobs.submitJob({
    idempotencyKey,
    retentionMs: BigInt(retentionMs),
    matmul: {
      a: { rows: m, cols: k, inlineData: bytes(a) },
      b: { rows: k, cols: n, inlineData: bytes(b) },
      tileRows: tile,
      tileCols: tile,
      kernel: "reference",
    },
  });
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let x = 0; x < k; x++) sum += (a[i * k + x] as number) * (b[x * n + j] as number);
      c[i * n + j] = sum;
    }
  return { jobId: res.jobId, c, n };
}

/** The tile of C a lease asks for, as a worker would compute it (`wrong` adds 1 to its first value). */
export function tileOf(lease: ShardLease, job: Pick<InlineJob, "c" | "n">, wrong = false): Uint8Array {
  const t = lease.matmul;
  if (!t) throw new Error("lease without a task");
  const out = new Float64Array((t.rowEnd - t.rowStart) * (t.colEnd - t.colStart));
  let o = 0;
  for (let i = t.rowStart; i < t.rowEnd; i++)
    for (let j = t.colStart; j < t.colEnd; j++) out[o++] = job.c[i * job.n + j] as number;
  if (wrong) out[0] = (out[0] as number) + 1;
  return bytes(out);
}
