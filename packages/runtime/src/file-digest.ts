/**
 * SHA-256 of a file, off the event loop (`@dce/runtime/file-digest`, Node.js only).
 *
 * Hashing a matrix file is the largest piece of CPU work a coordinator does on its own
 * (a 128 MiB file takes about 90 ms): run on the event loop it stalls every RPC, and
 * two uploads hashed there take turns instead of using two cores. Here each file is read
 * in 8 MiB pieces and hashed on a small pool of threads (lazily started, unref'd), so
 * A and B of one job are checked side by side while the event loop keeps serving.
 *
 * @packageDocumentation
 */
import { createThreadPool, type ThreadPool } from "./thread-pool.js";

/** One file to hash: `[offset, offset + length)` of `path`. */
interface DigestTask {
  readonly path: string;
  readonly offset: number;
  readonly length: number;
}

/**
 * The thread: reads the range in pieces and hashes it. A data: URL keeps the thread's
 * code in this module (no second file to find next to the built one).
 */
const THREAD_SOURCE = `
import { parentPort } from "node:worker_threads";
import { closeSync, openSync, readSync } from "node:fs";
import { createHash } from "node:crypto";
const PIECE = 8 * 1024 * 1024;
let buf;
parentPort.on("message", ({ id, task }) => {
  try {
    const hash = createHash("sha256");
    const fd = openSync(task.path, "r");
    try {
      buf ??= Buffer.allocUnsafe(PIECE);
      for (let pos = 0; pos < task.length; ) {
        const n = readSync(fd, buf, 0, Math.min(PIECE, task.length - pos), task.offset + pos);
        if (n === 0) throw new Error(task.path + " ends at " + (task.offset + pos) + " bytes, expected " + (task.offset + task.length));
        hash.update(buf.subarray(0, n));
        pos += n;
      }
    } finally {
      closeSync(fd);
    }
    parentPort.postMessage({ id, ok: true, value: hash.digest("hex") });
  } catch (e) {
    parentPort.postMessage({ id, ok: false, error: e instanceof Error ? e.message : String(e), code: e?.code });
  }
});
`;

/** Threads of the shared pool: two, so two files (A and B) hash at once. */
const DIGEST_THREADS = 2;

let pool: ThreadPool<DigestTask, string> | undefined;

function digestPool(): ThreadPool<DigestTask, string> {
  pool ??= createThreadPool<DigestTask, string>({
    threads: DIGEST_THREADS,
    url: new URL(`data:text/javascript,${encodeURIComponent(THREAD_SOURCE)}`),
    startThreads: "lazy",
    unref: true,
    threadLabel: "digest thread",
    closedMessage: "the digest threads were closed",
    encode: (id, tasks) => ({ message: { id, task: tasks[0] }, transfer: [] }),
    decode: (reply) => {
      const r = reply as { ok: boolean; value?: string; error?: string; code?: string };
      if (r.ok) return [{ ok: true, value: r.value as string }];
      const error = Object.assign(new Error(r.error ?? "digest failed"), r.code ? { code: r.code } : {});
      return [{ ok: false, error }];
    },
  });
  return pool;
}

/**
 * The lower-case hex SHA-256 of `length` bytes of the file at `path` from `offset`
 * (default: the first `length` bytes), computed on a thread.
 *
 * @throws the read's error (its `code` kept, e.g. `ENOENT`), or an Error when the file
 *   ends before `offset + length`.
 */
export async function digestFile(path: string, length: number, offset = 0): Promise<string> {
  const { value } = await digestPool().run({ path, offset, length });
  return value;
}
