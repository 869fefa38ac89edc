import { LOG_FORMATS, type LogFormat } from "@dce/runtime/logging";
import { Command, CommanderError, Option } from "commander";
import { isKernelName, type KernelName, kernelNames } from "./kernels/names.js";
import { defaultCacheBytes, defaultMaxMessageBytes, defaultShutdownGraceMs, minMaxMessageBytes } from "./limits.js";
import { peerAddressProblems } from "./peer/peer-args.js";
import { defaultPeerTimeoutMs } from "./peer/peer-reader.js";
import { version } from "./version.js";

/** Log levels `--log-level` accepts (pino's). */
export const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
/** One of {@link logLevels}. */
export type LogLevel = (typeof logLevels)[number];

/** Everything the `worker` command needs, resolved from flags, environment, and defaults. */
export interface WorkerCliConfig {
  /** `--coordinator` / `DCE_COORDINATOR`: `https://HOST:PORT` (or `http://` for development). */
  readonly coordinatorUrl: string;
  /** `--ca` / `DCE_CA`: PEM file of the CA that signed the coordinator's certificate. */
  readonly caFile: string | undefined;
  /** `--cert` / `DCE_WORKER_CERT`: PEM file of this worker's client certificate (its identity). */
  readonly certFile: string | undefined;
  /** `--key` / `DCE_WORKER_KEY`: PEM file of the private key of `certFile`. */
  readonly keyFile: string | undefined;
  /** `--threads` / `DCE_WORKER_THREADS`; `undefined` means one per core. */
  readonly threads: number | undefined;
  /** `--name` / `DCE_WORKER_NAME`; `undefined` means the host name. */
  readonly name: string | undefined;
  /** `--cache-bytes` / `DCE_CACHE_BYTES`; default 1 GiB. */
  readonly cacheBytes: number;
  /** `--local-store` / `DCE_LOCAL_STORE`: `auto` (default) reads the coordinator's blob files when it can; `off` always uses ReadBlob. */
  readonly localStore: "auto" | "off";
  /** `--max-message-bytes` / `DCE_MAX_MESSAGE_BYTES`; default 4 MiB. */
  readonly maxMessageBytes: number;
  /** `--shutdown-grace-ms` / `DCE_SHUTDOWN_GRACE_MS`; default 10 000. */
  readonly shutdownGraceMs: number;
  /** `--retry-budget-ms` / `DCE_RETRY_BUDGET_MS`; default 0 (retry forever). */
  readonly retryBudgetMs: number;
  /** `--log-level` / `DCE_LOG_LEVEL`; default `info`. */
  readonly logLevel: LogLevel;
  /** `--log-format` / `DCE_LOG_FORMAT`: `auto` (default; pretty on a terminal, JSON lines otherwise), `json` or `pretty`. */
  readonly logFormat: LogFormat | "auto";
  /**
   * `--kernels` / `DCE_WORKER_KERNELS`: the kernels to offer, in preference order, or
   * `"auto"` (default) for every available one, fastest first.
   */
  readonly kernels: "auto" | readonly KernelName[];
  /** `--peer-listen` / `DCE_WORKER_PEER_LISTEN`: `HOST:PORT` of the panel server for peers; default none (off). */
  readonly peerListen: string | undefined;
  /** `--peer-advertise` / `DCE_WORKER_PEER_ADVERTISE`: `HOST:PORT` peers are told; default the listen address. */
  readonly peerAdvertise: string | undefined;
  /** `--peer-timeout-ms` / `DCE_WORKER_PEER_TIMEOUT_MS`: bound on reaching a peer and on its silence; default 3 000. */
  readonly peerTimeoutMs: number;
  /** `--chaos-crash-rate` / `DCE_CHAOS_CRASH_RATE`: probability of dying mid-shard; default 0. */
  readonly chaosCrashRate: number;
  /** `--chaos-delay-ms` / `DCE_CHAOS_DELAY_MS`: random delay up to this before each report; default 0. */
  readonly chaosDelayMs: number;
  /** `--chaos-drop-rate` / `DCE_CHAOS_DROP_RATE`: probability of losing a completion; default 0. */
  readonly chaosDropRate: number;
  /** `--chaos-corrupt-rate` / `DCE_CHAOS_CORRUPT_RATE`: probability of returning a corrupted result; default 0. */
  readonly chaosCorruptRate: number;
  /** `--chaos-crash-on-shard` / `DCE_CHAOS_CRASH_ON_SHARD`: die whenever running this shard index of any job; default none. */
  readonly chaosCrashOnShard: number | undefined;
}

/**
 * What {@link parseArgs} decided: run with `config`, or print `usage` and exit with
 * `exitCode` (0 after `--help`/`--version`, whose text goes to stdout; 2 for a usage
 * error, whose text goes to stderr).
 */
export type ParseArgsResult =
  | { readonly ok: true; readonly config: WorkerCliConfig }
  | { readonly ok: false; readonly usage: string; readonly exitCode: 0 | 2 };

interface FlagSpec {
  readonly flag: string;
  readonly key: string;
  readonly env: string;
  readonly help: string;
}

const flags: readonly FlagSpec[] = [
  {
    flag: "--coordinator <url>",
    key: "coordinator",
    env: "DCE_COORDINATOR",
    help: "coordinator URL, https://HOST:PORT (http:// for development)",
  },
  {
    flag: "--ca <file>",
    key: "ca",
    env: "DCE_CA",
    help: "PEM file of the CA that signed the coordinator certificate (default: system CAs)",
  },
  {
    flag: "--cert <file>",
    key: "cert",
    env: "DCE_WORKER_CERT",
    help: "PEM file of this worker's client certificate, signed by the coordinator's CA, one per worker (coordinator init-certs writes worker-1.pem ... worker-N.pem)",
  },
  {
    flag: "--key <file>",
    key: "key",
    env: "DCE_WORKER_KEY",
    help: "PEM file of the certificate's private key (worker-1-key.pem ...)",
  },
  { flag: "--threads <n>", key: "threads", env: "DCE_WORKER_THREADS", help: "compute threads (default: one per core)" },
  { flag: "--name <name>", key: "name", env: "DCE_WORKER_NAME", help: "display name (default: host name)" },
  {
    flag: "--cache-bytes <n>",
    key: "cacheBytes",
    env: "DCE_CACHE_BYTES",
    help: "input-matrix cache budget in bytes (default: 1073741824)",
  },
  {
    flag: "--local-store <mode>",
    key: "localStore",
    env: "DCE_LOCAL_STORE",
    help: "auto|off; auto reads input blocks from the coordinator's blob files when it offers them and they are readable here, off always uses ReadBlob (default: auto)",
  },
  {
    flag: "--max-message-bytes <n>",
    key: "maxMessageBytes",
    env: "DCE_MAX_MESSAGE_BYTES",
    help: "largest gRPC message in bytes (default: 4194304)",
  },
  {
    flag: "--shutdown-grace-ms <n>",
    key: "shutdownGraceMs",
    env: "DCE_SHUTDOWN_GRACE_MS",
    help: "time running shards get to finish on SIGINT/SIGTERM (default: 10000)",
  },
  {
    flag: "--retry-budget-ms <n>",
    key: "retryBudgetMs",
    env: "DCE_RETRY_BUDGET_MS",
    help: "give up (exit 1) after the coordinator is unreachable this long; 0 = never (default: 0)",
  },
  { flag: "--log-level <level>", key: "logLevel", env: "DCE_LOG_LEVEL", help: `${logLevels.join("|")} (default: info)` },
  {
    flag: "--log-format <format>",
    key: "logFormat",
    env: "DCE_LOG_FORMAT",
    help: "auto|json|pretty; auto = pretty on a terminal, JSON lines otherwise (default: auto)",
  },
  {
    flag: "--kernels <list>",
    key: "kernels",
    env: "DCE_WORKER_KERNELS",
    help: `kernels to offer, comma-separated in preference order, from ${kernelNames.join(", ")}; auto = every available one, fastest first (default: auto)`,
  },
  {
    flag: "--peer-listen <host:port>",
    key: "peerListen",
    env: "DCE_WORKER_PEER_LISTEN",
    help: "serve the input panels this worker holds to other workers of the cluster on HOST:PORT (mTLS; needs --cert, --key, --ca) (default: off)",
  },
  {
    flag: "--peer-advertise <host:port>",
    key: "peerAdvertise",
    env: "DCE_WORKER_PEER_ADVERTISE",
    help: "HOST:PORT other workers reach the panel server at; required when --peer-listen is 0.0.0.0 or [::] (default: the --peer-listen address)",
  },
  {
    flag: "--peer-timeout-ms <n>",
    key: "peerTimeoutMs",
    env: "DCE_WORKER_PEER_TIMEOUT_MS",
    help: `how long a peer may take to be reached, or stay silent (HTTP/2 PINGs), before the next peer, then the coordinator, is asked (default: ${defaultPeerTimeoutMs})`,
  },
  {
    flag: "--chaos-crash-rate <p>",
    key: "chaosCrashRate",
    env: "DCE_CHAOS_CRASH_RATE",
    help: "chaos: probability of exiting abruptly mid-shard (default: 0)",
  },
  {
    flag: "--chaos-delay-ms <n>",
    key: "chaosDelayMs",
    env: "DCE_CHAOS_DELAY_MS",
    help: "chaos: random delay up to n ms before each report (default: 0)",
  },
  {
    flag: "--chaos-drop-rate <p>",
    key: "chaosDropRate",
    env: "DCE_CHAOS_DROP_RATE",
    help: "chaos: probability of losing a completion RPC (default: 0)",
  },
  {
    flag: "--chaos-corrupt-rate <p>",
    key: "chaosCorruptRate",
    env: "DCE_CHAOS_CORRUPT_RATE",
    help: "chaos: probability of returning a wrong result (one entry: a high exponent/mantissa bit flipped or scaled by 1 ± 2^-9..2^-8) (default: 0)",
  },
  {
    flag: "--chaos-crash-on-shard <n>",
    key: "chaosCrashOnShard",
    env: "DCE_CHAOS_CRASH_ON_SHARD",
    help: "chaos: exit abruptly whenever running shard index n of any job, a poison shard (default: none)",
  },
];

/**
 * Parses the `worker` command line. Pure: reads nothing but its arguments, never
 * exits, never prints. A flag wins over its environment variable, which wins over
 * the default.
 *
 * @param argv - The arguments after the program name (`process.argv.slice(2)`).
 * @param env - Environment variables (`process.env`).
 */
export function parseArgs(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ParseArgsResult {
  let out = "";
  let err = "";
  const program = new Command("worker")
    .description("dce worker: pulls matrix-multiplication shards from a coordinator and computes them")
    .version(version, "-V, --version")
    .helpOption("-h, --help")
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => {
        out += s;
      },
      writeErr: (s) => {
        err += s;
      },
      // A fixed width keeps the output independent of the terminal (parseArgs stays pure).
      getOutHelpWidth: () => 100,
      getErrHelpWidth: () => 100,
    });
  for (const f of flags) program.addOption(new Option(f.flag, `${f.help} [env ${f.env}]`));
  program.addHelpText(
    "after",
    "\nLogs go to stderr (JSON lines unless it is a terminal). Exit codes: 0 drained cleanly, 1 failure, 2 usage.",
  );

  try {
    program.parse([...argv], { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version") {
        return { ok: false, usage: out, exitCode: 0 };
      }
      return usageError(err.trim() || e.message, program);
    }
    throw e;
  }

  const opts = program.opts<Record<string, string | undefined>>();
  const raw = (key: string): string | undefined => {
    const spec = flags.find((f) => f.key === key) as FlagSpec;
    const value = opts[key] ?? env[spec.env];
    return value === "" ? undefined : value;
  };

  const problems: string[] = [];
  const integer = (key: string, label: string, fallback: number, min: number): number => {
    const text = raw(key);
    if (text === undefined) return fallback;
    const value = /^\d+$/.test(text) ? Number(text) : Number.NaN;
    if (!Number.isSafeInteger(value) || value < min) {
      problems.push(`${label} must be an integer >= ${min}, got "${text}"`);
      return fallback;
    }
    return value;
  };

  const coordinatorUrl = raw("coordinator");
  if (coordinatorUrl === undefined) {
    problems.push("--coordinator (or DCE_COORDINATOR) is required");
  } else if (!URL.canParse(coordinatorUrl) || !["http:", "https:"].includes(new URL(coordinatorUrl).protocol)) {
    problems.push(`--coordinator must be an http:// or https:// URL, got "${coordinatorUrl}"`);
  }
  const certFile = raw("cert");
  const keyFile = raw("key");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    problems.push("--cert and --key go together: give both or neither");
  } else if (certFile !== undefined && coordinatorUrl?.startsWith("http:")) {
    problems.push("--cert/--key need an https:// coordinator");
  }
  const threadsText = raw("threads");
  const threads = threadsText === undefined ? undefined : integer("threads", "--threads", 1, 1);
  const cacheBytes = integer("cacheBytes", "--cache-bytes", defaultCacheBytes, 0);
  const maxMessageBytes = integer("maxMessageBytes", "--max-message-bytes", defaultMaxMessageBytes, minMaxMessageBytes);
  const shutdownGraceMs = integer("shutdownGraceMs", "--shutdown-grace-ms", defaultShutdownGraceMs, 0);
  const retryBudgetMs = integer("retryBudgetMs", "--retry-budget-ms", 0, 0);
  const localStore = raw("localStore") ?? "auto";
  if (localStore !== "auto" && localStore !== "off") problems.push(`--local-store must be auto or off, got "${localStore}"`);
  const logLevel = raw("logLevel") ?? "info";
  if (!(logLevels as readonly string[]).includes(logLevel)) {
    problems.push(`--log-level must be one of ${logLevels.join(", ")}, got "${logLevel}"`);
  }
  const logFormat = raw("logFormat") ?? "auto";
  if (!(LOG_FORMATS as readonly string[]).includes(logFormat)) {
    problems.push(`--log-format must be one of ${LOG_FORMATS.join(", ")}, got "${logFormat}"`);
  }

  const peerListen = raw("peerListen");
  const peerAdvertise = raw("peerAdvertise");
  problems.push(...peerAddressProblems(peerListen, peerAdvertise));
  const peerTimeoutMs = integer("peerTimeoutMs", "--peer-timeout-ms", defaultPeerTimeoutMs, 1);
  const kernels = parseKernels(raw("kernels") ?? "auto", problems);
  const rate = (key: "chaosCrashRate" | "chaosDropRate" | "chaosCorruptRate", flag: string): number => {
    const text = raw(key);
    if (text === undefined) return 0;
    const p = Number(text);
    if (!Number.isFinite(p) || p < 0 || p > 1 || text.trim() === "") {
      problems.push(`${flag} must be a probability between 0 and 1, got "${text}"`);
      return 0;
    }
    return p;
  };
  const chaosCrashRate = rate("chaosCrashRate", "--chaos-crash-rate");
  const chaosDropRate = rate("chaosDropRate", "--chaos-drop-rate");
  const chaosCorruptRate = rate("chaosCorruptRate", "--chaos-corrupt-rate");
  const chaosDelayMs = integer("chaosDelayMs", "--chaos-delay-ms", 0, 0);
  const chaosCrashOnShard =
    raw("chaosCrashOnShard") === undefined ? undefined : integer("chaosCrashOnShard", "--chaos-crash-on-shard", 0, 0);

  if (problems.length > 0 || coordinatorUrl === undefined) {
    return usageError(problems.map((p) => `error: ${p}`).join("\n"), program);
  }
  return {
    ok: true,
    config: {
      coordinatorUrl,
      caFile: raw("ca"),
      certFile,
      keyFile,
      threads,
      name: raw("name"),
      cacheBytes,
      localStore: localStore as "auto" | "off",
      maxMessageBytes,
      shutdownGraceMs,
      retryBudgetMs,
      logLevel: logLevel as LogLevel,
      logFormat: logFormat as LogFormat | "auto",
      kernels,
      peerListen,
      peerAdvertise,
      peerTimeoutMs,
      chaosCrashRate,
      chaosDelayMs,
      chaosDropRate,
      chaosCorruptRate,
      chaosCrashOnShard,
    },
  };
}

/** `auto`, or a comma-separated list of distinct kernel names (problems are appended to `problems`). */
function parseKernels(text: string, problems: string[]): "auto" | readonly KernelName[] {
  if (text.trim() === "auto") return "auto";
  const names = text.split(",").map((s) => s.trim());
  const bad = names.filter((name) => !isKernelName(name));
  if (bad.length > 0) {
    problems.push(`--kernels: unknown kernel ${bad.map((b) => `"${b}"`).join(", ")} (known: auto, ${kernelNames.join(", ")})`);
    return "auto";
  }
  const repeated = names.filter((name, i) => names.indexOf(name) !== i);
  if (repeated.length > 0) {
    problems.push(`--kernels: "${repeated[0]}" is listed twice`);
    return "auto";
  }
  return names as KernelName[];
}

function usageError(message: string, program: Command): ParseArgsResult {
  return { ok: false, usage: `${message}\n\n${program.helpInformation()}`, exitCode: 2 };
}
