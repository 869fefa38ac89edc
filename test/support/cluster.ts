import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient as createConnectClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

/** Repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const BIN = {
  coordinator: join(ROOT, "packages/coordinator/bin/coordinator.js"),
  worker: join(ROOT, "packages/worker/bin/worker.js"),
  dce: join(ROOT, "packages/client-sdk/bin/dce.js"),
};

/** A child process with its captured output. */
export interface Proc {
  readonly child: ChildProcess;
  readonly name: string;
  stdout: string;
  stderr: string;
  /** Resolves with the exit code (or the signal name). */
  readonly exited: Promise<number | string>;
}

/** Spawns `node BIN args`, capturing output. */
export function spawnNode(name: string, bin: string, args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, [bin, ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const p: Proc = {
    child,
    name,
    stdout: "",
    stderr: "",
    exited: new Promise((res) => child.on("exit", (code, sig) => res(code ?? sig ?? -1))),
  };
  child.stdout?.on("data", (d: Buffer) => {
    p.stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    p.stderr += d.toString();
  });
  return p;
}

/** Waits until `pred(proc)` holds, the process exits, or `timeoutMs` passes. */
export async function waitFor(proc: Proc, pred: (p: Proc) => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void proc.exited.then(() => {
    exited = true;
  });
  while (!pred(proc)) {
    if (exited) throw new Error(`${proc.name} exited while waiting for ${what}:\n${proc.stderr.slice(-3000)}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} from ${proc.name}:\n${proc.stderr.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Options of {@link startCluster}. */
export interface ClusterOptions {
  workers?: number;
  threadsPerWorker?: number;
  leaseTtlMs?: number;
  maxMessageBytes?: number;
  extraCoordinatorArgs?: string[];
  extraWorkerArgs?: string[];
  /** Environment of the first coordinator process only (restarts run without it). */
  coordinatorEnv?: Record<string, string>;
}

/** A real coordinator process plus worker processes over TLS on loopback. */
export interface Cluster {
  readonly url: string;
  readonly dir: string;
  readonly tlsDir: string;
  readonly ca: string;
  readonly caPath: string;
  readonly dataDir: string;
  /** The current coordinator process (replaced by {@link Cluster.restartCoordinator}). */
  readonly coordinator: Proc;
  readonly workers: Proc[];
  /** Kills the coordinator (SIGKILL by default) and starts it again on the same port and data dir. */
  restartCoordinator(signal?: NodeJS.Signals): Promise<{ readyMs: number }>;
  /** Starts one more worker. */
  addWorker(name?: string, extraArgs?: string[]): Promise<Proc>;
  /** A raw Connect client for a service of the coordinator (TLS verified against the CA). */
  raw<S extends DescService>(service: S, opts?: { maxMessageBytes?: number }): Client<S>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Generates certificates, starts a TLS coordinator on a free port and `workers` workers. */
export async function startCluster(o: ClusterOptions = {}): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), "dce-test-"));
  const tlsDir = join(dir, "certs");
  const init = spawnNode("init-certs", BIN.coordinator, ["init-certs", "--out", tlsDir]);
  const code = await init.exited;
  if (code !== 0) throw new Error(`init-certs failed: ${init.stderr}`);
  const caPath = join(tlsDir, "ca.pem");
  const ca = readFileSync(caPath, "utf8");
  const dataDir = join(dir, "data");
  const launch = async (port: number, env: Record<string, string> = {}): Promise<{ proc: Proc; url: string }> => {
    const proc = spawnNode(
      "coordinator",
      BIN.coordinator,
      [
        "--tls-dir",
        tlsDir,
        "--port",
        String(port),
        "--data-dir",
        dataDir,
        "--lease-ttl-ms",
        String(o.leaseTtlMs ?? 3000),
        ...(o.maxMessageBytes ? ["--max-message-bytes", String(o.maxMessageBytes)] : []),
        ...(o.extraCoordinatorArgs ?? []),
      ],
      env,
    );
    await waitFor(proc, (p) => /listening on (\S+)/.test(p.stdout), 15_000, "listening line");
    return { proc, url: (/listening on (\S+)/.exec(proc.stdout) as RegExpExecArray)[1] as string };
  };
  const first = await launch(0, o.coordinatorEnv);
  let coordinator = first.proc;
  const url = first.url;
  const port = Number(new URL(url).port);
  const workers: Proc[] = [];
  const procs: Proc[] = [coordinator];
  const addWorker = async (name = `w${workers.length + 1}`, extraArgs: string[] = []): Promise<Proc> => {
    const w = spawnNode(name, BIN.worker, [
      "--coordinator",
      url,
      "--ca",
      caPath,
      "--threads",
      String(o.threadsPerWorker ?? 1),
      "--name",
      name,
      ...(o.extraWorkerArgs ?? []),
      ...extraArgs,
    ]);
    workers.push(w);
    procs.push(w);
    await waitFor(w, (p) => p.stderr.includes("worker registered"), 15_000, "registration");
    return w;
  };
  for (let i = 0; i < (o.workers ?? 2); i++) await addWorker();
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL");
      await Promise.all(procs.map((p) => p.exited));
      rmSync(dir, { recursive: true, force: true });
    })();
    return closing;
  };
  return {
    url,
    dir,
    dataDir,
    get coordinator() {
      return coordinator;
    },
    async restartCoordinator(signal: NodeJS.Signals = "SIGKILL") {
      const t0 = performance.now();
      coordinator.child.kill(signal);
      await coordinator.exited;
      const next = await launch(port);
      coordinator = next.proc;
      procs.push(coordinator);
      return { readyMs: performance.now() - t0 };
    },
    tlsDir,
    ca,
    caPath,
    workers,
    addWorker,
    raw: (service, opts) =>
      createConnectClient(
        service,
        createGrpcTransport({
          baseUrl: url,
          nodeOptions: { ca },
          readMaxBytes: opts?.maxMessageBytes ?? 4 * 1024 * 1024,
          writeMaxBytes: opts?.maxMessageBytes ?? 4 * 1024 * 1024,
        }),
      ),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Deterministic pseudo-random float64 matrix (values in [-1, 1)), from a seed. */
export function randomMatrix(rows: number, cols: number, seed: number): { rows: number; cols: number; data: Float64Array } {
  let x = seed >>> 0 || 1;
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < data.length; i++) {
    // xorshift32: enough for test data; the engine never sees the generator.
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    data[i] = (x / 0x100000000) * 2 - 1;
  }
  return { rows, cols, data };
}

/**
 * An independent naive multiply (i-j-k, one accumulator per element, ascending k).
 * It shares no code with the engine's kernels.
 */
export function naiveMultiply(
  a: { rows: number; cols: number; data: Float64Array },
  b: { rows: number; cols: number; data: Float64Array },
): Float64Array {
  const c = new Float64Array(a.rows * b.cols);
  for (let i = 0; i < a.rows; i++) {
    for (let j = 0; j < b.cols; j++) {
      let s = 0;
      for (let k = 0; k < a.cols; k++) s += (a.data[i * a.cols + k] as number) * (b.data[k * b.cols + j] as number);
      c[i * b.cols + j] = s;
    }
  }
  return c;
}

/** True when two Float64Arrays hold the same bytes. */
export function sameBytes(x: Float64Array, y: Float64Array): boolean {
  return Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(y.buffer, y.byteOffset, y.byteLength));
}
