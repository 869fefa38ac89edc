import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient as createConnectClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { issueWorkerCertificate } from "@dce/coordinator";

/** Deterministic pseudo-random float64 matrix (values in [-1, 1)), from a seed: the one generator, shared with scripts and bench. */
export { randomMatrix } from "@dce/core/testing";

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
  /** The coordinator's `--data-dir` (e.g. a small file system); default a folder in the cluster's temp dir. */
  dataDir?: string;
  /**
   * Authentication (default true): workers get their own CA-signed certificates and the
   * cluster a client and an admin token. False starts the coordinator with `--dev-no-auth`.
   */
  auth?: boolean;
  /**
   * The README's setup: `init-certs --workers N` writes worker-1.pem … worker-N.pem and the
   * first N workers started present them (identities worker-1 … worker-N), whatever their
   * names. Later workers, and every worker without this option, get a certificate issued
   * for their name (identity = name).
   */
  initCertsWorkers?: number;
}

/** A certificate and its key, as PEM file paths. */
export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

/** Options of {@link Cluster.raw}. */
export interface RawOptions {
  maxMessageBytes?: number;
  /** Bearer token sent with every call; default the cluster's client token, null for none. */
  token?: string | null;
  /** Client certificate presented; default {@link Cluster.workerCert}, null for none. */
  cert?: CertFiles | null;
}

/**
 * What a client presents to the coordinator: the CA its TLS certificate is checked
 * against, a client certificate and key if the coordinator asks for one, and request
 * headers (a bearer token). Tests that open their own connections (raw HTTP/2, other
 * gRPC libraries) take everything from here, so they follow the harness's security setup.
 */
export interface ClientCredentials {
  readonly ca: string;
  readonly cert?: string;
  readonly key?: string;
  /** Sent with every request, e.g. `authorization`. Lower-case names. */
  readonly headers: Readonly<Record<string, string>>;
}

/** A real coordinator process plus worker processes over TLS on loopback. */
export interface Cluster {
  readonly url: string;
  readonly dir: string;
  readonly tlsDir: string;
  readonly ca: string;
  readonly caPath: string;
  readonly dataDir: string;
  /** Whether the coordinator checks certificates and tokens. */
  readonly auth: boolean;
  /** Bearer token of the client "test-client" (empty with `auth: false`). */
  readonly token: string;
  /** Bearer token of the admin "test-admin" (empty with `auth: false`). */
  readonly adminToken: string;
  /** A worker certificate from init-certs that no worker of the cluster presents (the last one it wrote). */
  readonly workerCert: CertFiles;
  /** Options for `createClient` of the SDK: URL, CA and the client token. */
  readonly clientOptions: { baseUrl: string; ca: string; token?: string };
  /** Issues a certificate for worker identity `name` from the cluster's CA. */
  issueWorkerCert(name: string, opts?: { validDays?: number; now?: Date }): Promise<CertFiles>;
  /** Runs `coordinator tokens ARGS --data-dir DATA_DIR` and returns its stdout (trimmed). */
  tokens(...args: string[]): Promise<string>;
  /** The current coordinator process (replaced by {@link Cluster.restartCoordinator}). */
  readonly coordinator: Proc;
  readonly workers: Proc[];
  /** Kills the coordinator (SIGKILL by default) and starts it again on the same port and data dir. */
  restartCoordinator(signal?: NodeJS.Signals): Promise<{ readyMs: number }>;
  /**
   * Starts one more worker. With auth on it presents `opts.cert`, else its own certificate:
   * identity = name, or worker-i (see `initCertsWorkers`).
   */
  addWorker(name?: string, extraArgs?: string[], opts?: { cert?: CertFiles }): Promise<Proc>;
  /**
   * The credentials of a client of this cluster: the CA, {@link Cluster.workerCert} and
   * the client token (see {@link ClientCredentials}), so every service answers.
   */
  readonly client: ClientCredentials;
  /** A gRPC transport to the coordinator, with the same defaults as {@link Cluster.raw}. */
  transport(opts?: RawOptions): Transport;
  /**
   * A raw Connect client for a service of the coordinator (TLS verified against the CA),
   * by default with the client token and {@link Cluster.workerCert}, so every service answers.
   */
  raw<S extends DescService>(service: S, opts?: RawOptions): Client<S>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Runs a `coordinator` subcommand to completion; returns its stdout, throws with its stderr on failure. */
export async function runCoordinatorCommand(args: string[]): Promise<string> {
  const p = spawnNode(`coordinator ${args[0]}`, BIN.coordinator, args);
  const code = await p.exited;
  if (code !== 0) throw new Error(`coordinator ${args.join(" ")} exited with ${code}: ${p.stderr}`);
  return p.stdout.trim();
}

/**
 * Generates certificates and tokens (through the `coordinator` bin, as an operator
 * would), starts a TLS coordinator on a free port and `workers` workers, each with
 * its own certificate.
 */
export async function startCluster(o: ClusterOptions = {}): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), "dce-test-"));
  const tlsDir = join(dir, "certs");
  const dataDir = o.dataDir ?? join(dir, "data");
  const auth = o.auth ?? true;
  const tokens = (...args: string[]) => runCoordinatorCommand(["tokens", ...args, "--data-dir", dataDir]);
  const [, token, adminToken] = await Promise.all([
    runCoordinatorCommand(["init-certs", "--out", tlsDir, "--workers", String((o.initCertsWorkers ?? 0) + 1)]),
    auth ? tokens("add", "test-client") : "",
    auth ? tokens("add", "test-admin", "--role", "admin") : "",
  ]);
  const caPath = join(tlsDir, "ca.pem");
  const ca = readFileSync(caPath, "utf8");
  const initCert = (i: number): CertFiles => ({
    cert: join(tlsDir, `worker-${i}.pem`),
    key: join(tlsDir, `worker-${i}-key.pem`),
  });
  const workerCert = initCert((o.initCertsWorkers ?? 0) + 1);
  const issueWorkerCert = (name: string, opts: { validDays?: number; now?: Date } = {}) =>
    issueWorkerCertificate({ dir: tlsDir, name, ...opts });
  const launch = async (port: number, env: Record<string, string> = {}): Promise<{ proc: Proc; url: string }> => {
    const proc = spawnNode(
      "coordinator",
      BIN.coordinator,
      [
        ...(auth ? [] : ["--dev-no-auth"]),
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
  const addWorker = async (
    name = `w${workers.length + 1}`,
    extraArgs: string[] = [],
    opts: { cert?: CertFiles } = {},
  ): Promise<Proc> => {
    const fromInitCerts = workers.length < (o.initCertsWorkers ?? 0);
    const own = !auth ? undefined : (opts.cert ?? (fromInitCerts ? initCert(workers.length + 1) : await issueWorkerCert(name)));
    const w = spawnNode(name, BIN.worker, [
      "--coordinator",
      url,
      "--ca",
      caPath,
      ...(own ? ["--cert", own.cert, "--key", own.key] : []),
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
  const presented = { cert: readFileSync(workerCert.cert, "utf8"), key: readFileSync(workerCert.key, "utf8") };
  const client: ClientCredentials = { ca, ...presented, headers: auth ? { authorization: `Bearer ${token}` } : {} };
  const transport = (opts?: RawOptions): Transport => {
    const bearer = opts?.token === undefined ? (auth ? token : null) : opts.token;
    const cert = opts?.cert === undefined ? workerCert : opts.cert;
    const withToken: Interceptor = (next) => (req) => {
      if (bearer) req.header.set("authorization", `Bearer ${bearer}`);
      return next(req);
    };
    return createGrpcTransport({
      baseUrl: url,
      nodeOptions: {
        ca,
        ...(cert ? { cert: readFileSync(cert.cert, "utf8"), key: readFileSync(cert.key, "utf8") } : {}),
      },
      interceptors: [withToken],
      readMaxBytes: opts?.maxMessageBytes ?? 4 * 1024 * 1024,
      writeMaxBytes: opts?.maxMessageBytes ?? 4 * 1024 * 1024,
    });
  };
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL");
      await Promise.all(procs.map((p) => p.exited));
      rmSync(dir, { recursive: true, force: true });
    })();
    return closing;
  };
  try {
    for (let i = 0; i < (o.workers ?? 2); i++) await addWorker();
  } catch (e) {
    // The caller never gets the cluster to close: do not leave its processes behind.
    await close();
    throw e;
  }
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
    auth,
    token,
    adminToken,
    workerCert,
    clientOptions: { baseUrl: url, ca, ...(auth ? { token } : {}) },
    issueWorkerCert,
    tokens,
    workers,
    addWorker,
    client,
    transport,
    raw: (service, opts) => createConnectClient(service, transport(opts)),
    close,
    [Symbol.asyncDispose]: close,
  };
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
