import { DEFAULT_CORE_CONFIG, DEFAULT_SPEC_LIMITS } from "@dce/core";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat } from "@dce/runtime/logging";
import { Command, CommanderError, Option } from "commander";
import { addRetentionOptions, retentionOptionsOf } from "./args-retention.js";
import { addStorageFlags, storageOptionsOf } from "./args-storage.js";
import { addSetWeightCommand, type SetWeightCommand, tokenWeightOption } from "./args-token-weight.js";
import { DEFAULT_CONNECTION_LIMITS } from "./connection-guard.js";
import { addDevCommand, type DevCommand } from "./dev/dev-args.js";
import { DEFAULT_DEV_WORKER_CERTS, MAX_DEV_WORKER_CERTS } from "./dev-cert-counts.js";
import { type CoordinatorOptions, DEFAULT_DATA_DIR, DEFAULT_MAX_DEADLINE_MS } from "./server.js";
import { TOKEN_ROLES, type TokenRole } from "./tokens.js";

/** What the `coordinator` command line asks for. */
export type CoordinatorCommand =
  | { kind: "serve"; options: CoordinatorOptions; logLevel: string; logFormat: LogFormat | "auto" }
  | { kind: "init-certs"; outDir: string; hosts: string[]; validDays: number; workers: number; force: boolean }
  | { kind: "issue-worker-cert"; outDir: string; name: string; validDays: number }
  | { kind: "tokens"; action: "add"; dataDir: string; name: string; role: TokenRole; weight?: number }
  | { kind: "tokens"; action: "rotate"; dataDir: string; name: string; role?: TokenRole; weight?: number }
  | SetWeightCommand
  | { kind: "tokens"; action: "revoke"; dataDir: string; name: string }
  | { kind: "tokens"; action: "list"; dataDir: string; json: boolean }
  | DevCommand
  | { kind: "print"; text: string };

/** Result of {@link parseArgs}: a command, or the usage text and exit code to stop with. */
export type ParseResult = { ok: true; command: CoordinatorCommand } | { ok: false; usage: string; exitCode: number };

/** Package version, shown by `--version`. */
export const VERSION = "0.1.0";

function int(name: string, min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min)
      throw new CommanderError(2, "dce.invalidArg", `${name} must be an integer >= ${min}, got '${v}'`);
    return n;
  };
}

/**
 * Parses the `coordinator` command line. Pure: reads only `argv` and `env`, never
 * exits or prints. Flags win over their `DCE_*` environment fallbacks.
 * @param argv arguments after the program name.
 */
export function parseArgs(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ParseResult {
  let result: ParseResult | undefined;
  let out = "";
  const envErrors: string[] = [];
  // An integer flag with a DCE_* environment fallback, validated like the flag; the flag wins.
  const intFlag = (flag: string, envName: string, description: string, min: number, fallback: number): Option => {
    const parse = int(flag, min);
    const fromEnv = env[envName];
    let value = fallback;
    if (fromEnv !== undefined && fromEnv !== "") {
      try {
        value = parse(fromEnv);
      } catch (e) {
        envErrors.push(`${envName}: ${(e as Error).message}`);
      }
    }
    return new Option(`${flag} <n>`, `${description} (env ${envName})`).argParser(parse).default(value);
  };
  const program = new Command("coordinator")
    .description("dce coordinator: owns job state, leases shards to workers, assembles results")
    .version(VERSION)
    .exitOverride()
    .configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) })
    .showHelpAfterError(false)
    // `tokens … --data-dir` must reach the subcommand, not the server's flag of the same name.
    .enablePositionalOptions();

  addStorageFlags(program, env, envErrors)
    .addOption(new Option("--host <host>", "interface to bind").default(env.DCE_HOST ?? "127.0.0.1"))
    .addOption(
      new Option("--port <n>", "port (0 picks a free one)")
        .argParser(int("--port", 0))
        .default(env.DCE_PORT ? Number(env.DCE_PORT) : 7070),
    )
    .addOption(
      new Option("--tls-dir <dir>", "folder with server.pem, server-key.pem and ca.pem (the CA of worker certificates)").default(
        env.DCE_TLS_DIR,
      ),
    )
    .addOption(
      new Option("--insecure", "serve plaintext HTTP/2 without authentication (development; loopback hosts only)").default(
        env.DCE_INSECURE === "1",
      ),
    )
    .addOption(
      new Option(
        "--dev-no-auth",
        "turn authentication off: no client certificates, no tokens, every caller may do everything (development; loopback hosts only; env DCE_DEV_NO_AUTH=1)",
      ).default(env.DCE_DEV_NO_AUTH === "1"),
    )
    .addOption(
      new Option("--data-dir <dir>", "folder for blobs, results, the journal and tokens.json (env DCE_DATA_DIR)").default(
        env.DCE_DATA_DIR || DEFAULT_DATA_DIR,
      ),
    )
    .addOption(
      new Option("--lease-ttl-ms <ms>", "lease lifetime")
        .argParser(int("--lease-ttl-ms", 100))
        .default(env.DCE_LEASE_TTL_MS ? Number(env.DCE_LEASE_TTL_MS) : 10_000),
    )
    .addOption(
      new Option(
        "--max-attempts <n>",
        "reported failures of a shard (the kernel threw, or its result failed verification) before its job fails; a worker dying with it is not one (see --max-shard-deaths)",
      )
        .argParser(int("--max-attempts", 1))
        .default(env.DCE_MAX_ATTEMPTS ? Number(env.DCE_MAX_ATTEMPTS) : 5),
    )
    .addOption(
      intFlag(
        "--max-shard-deaths",
        "DCE_MAX_SHARD_DEATHS",
        "worker deaths (expired leases) while running one shard after which its job fails whatever the fleet does; fewer fail it, from 3 distinct workers on, when its deaths would have had a chance below 1e-9 at the fleet's death rate; 0 = deaths never fail a job",
        0,
        DEFAULT_CORE_CONFIG.maxShardDeaths,
      ),
    )
    .addOption(
      new Option("--max-message-bytes <n>", "largest RPC message read or written")
        .argParser(int("--max-message-bytes", 262144))
        .default(env.DCE_MAX_MESSAGE_BYTES ? Number(env.DCE_MAX_MESSAGE_BYTES) : 4 * 1024 * 1024),
    )
    .addOption(
      new Option(
        "--default-tile <n>",
        "tile edge when a job leaves it 0; 0 = chosen from the job's shape (square-ish tiles of at most 2 MiB, at most 64 per job)",
      )
        .argParser(int("--default-tile", 0))
        .default(env.DCE_DEFAULT_TILE ? Number(env.DCE_DEFAULT_TILE) : 0),
    )
    .addOption(
      new Option("--max-active-jobs <n>", "jobs queued or running at once")
        .argParser(int("--max-active-jobs", 1))
        .default(env.DCE_MAX_ACTIVE_JOBS ? Number(env.DCE_MAX_ACTIVE_JOBS) : 1000),
    )
    .addOption(
      intFlag(
        "--max-active-jobs-per-client",
        "DCE_MAX_ACTIVE_JOBS_PER_CLIENT",
        "jobs one client may have queued or running",
        1,
        DEFAULT_CORE_CONFIG.maxActiveJobsPerClient,
      ),
    )
    .addOption(intFlag("--max-dim", "DCE_MAX_DIM", "largest rows or cols of a matrix", 1, DEFAULT_SPEC_LIMITS.maxDim))
    .addOption(
      intFlag(
        "--max-matrix-bytes",
        "DCE_MAX_MATRIX_BYTES",
        "largest matrix (A, B or C) in bytes",
        8,
        DEFAULT_SPEC_LIMITS.maxMatrixBytes,
      ),
    )
    .addOption(
      intFlag(
        "--max-job-bytes",
        "DCE_MAX_JOB_BYTES",
        "largest A + B + C of one job in bytes",
        8,
        DEFAULT_SPEC_LIMITS.maxJobBytes,
      ),
    )
    .addOption(
      intFlag("--max-tile-bytes", "DCE_MAX_TILE_BYTES", "largest output tile in bytes", 8, DEFAULT_SPEC_LIMITS.maxTileBytes),
    )
    .addOption(
      intFlag(
        "--max-shards-per-job",
        "DCE_MAX_SHARDS_PER_JOB",
        "most shards one job may plan",
        1,
        DEFAULT_SPEC_LIMITS.maxShardsPerJob,
      ),
    )
    .addOption(intFlag("--max-long-poll-ms", "DCE_MAX_LONG_POLL_MS", "longest GetJob / AcquireShards wait", 0, 30_000))
    .addOption(
      intFlag(
        "--max-deadline-ms",
        "DCE_MAX_DEADLINE_MS",
        "largest call deadline (grpc-timeout) accepted",
        1000,
        DEFAULT_MAX_DEADLINE_MS,
      ),
    )
    .addOption(intFlag("--max-shards-per-acquire", "DCE_MAX_SHARDS_PER_ACQUIRE", "most leases per AcquireShards", 1, 1024))
    .addOption(intFlag("--max-open-uploads", "DCE_MAX_OPEN_UPLOADS", "blob uploads open at once", 1, 64))
    .addOption(intFlag("--upload-idle-ms", "DCE_UPLOAD_IDLE_MS", "an upload without a chunk this long is dropped", 1000, 600_000))
    .addOption(
      intFlag(
        "--max-connections",
        "DCE_MAX_CONNECTIONS",
        "connections open at once",
        1,
        DEFAULT_CONNECTION_LIMITS.maxConnections,
      ),
    )
    .addOption(
      intFlag(
        "--max-concurrent-streams",
        "DCE_MAX_CONCURRENT_STREAMS",
        "concurrent HTTP/2 streams per connection",
        1,
        DEFAULT_CONNECTION_LIMITS.maxConcurrentStreams,
      ),
    )
    .addOption(
      intFlag(
        "--handshake-timeout-ms",
        "DCE_HANDSHAKE_TIMEOUT_MS",
        "time to finish the TLS handshake and open a first stream",
        100,
        DEFAULT_CONNECTION_LIMITS.handshakeTimeoutMs,
      ),
    )
    .addOption(
      intFlag(
        "--idle-timeout-ms",
        "DCE_IDLE_TIMEOUT_MS",
        "a connection with no open stream this long is closed",
        100,
        DEFAULT_CONNECTION_LIMITS.idleTimeoutMs,
      ),
    )
    .addOption(
      intFlag(
        "--request-timeout-ms",
        "DCE_REQUEST_TIMEOUT_MS",
        "a unary request must arrive whole this long after its headers",
        100,
        DEFAULT_CONNECTION_LIMITS.requestTimeoutMs,
      ),
    )
    .addOption(
      intFlag(
        "--keepalive-interval-ms",
        "DCE_KEEPALIVE_INTERVAL_MS",
        "interval of keepalive pings on each connection",
        100,
        DEFAULT_CONNECTION_LIMITS.keepaliveIntervalMs,
      ),
    )
    .addOption(
      intFlag(
        "--keepalive-timeout-ms",
        "DCE_KEEPALIVE_TIMEOUT_MS",
        "a connection whose ping is unanswered this long is closed",
        100,
        DEFAULT_CONNECTION_LIMITS.keepaliveTimeoutMs,
      ),
    )
    .addOption(
      new Option("--verify <mode>", "check every worker result with Freivalds' test before accepting it (env DCE_VERIFY)")
        .choices(["on", "off"])
        .default(env.DCE_VERIFY ?? "on"),
    )
    .addOption(
      new Option(
        "--local-store <mode>",
        "offer the blob store to workers and clients on this host, which then move matrix bytes through files instead of RPCs (env DCE_LOCAL_STORE)",
      )
        .choices(["on", "off"])
        .default(env.DCE_LOCAL_STORE ?? "on"),
    )
    .addOption(
      intFlag("--verify-threads", "DCE_VERIFY_THREADS", "threads that check results; 0 = a quarter of the cores, 1 to 4", 0, 0),
    )
    .addOption(
      intFlag(
        "--quarantine-after",
        "DCE_QUARANTINE_AFTER",
        "results failing verification before a worker is quarantined; 0 = never",
        0,
        DEFAULT_CORE_CONFIG.quarantineAfterRejections,
      ),
    );
  addRetentionOptions(program, env, envErrors);
  program
    .addOption(
      new Option("--no-metrics", "do not serve Prometheus metrics at GET /metrics (env DCE_METRICS=0)").default(
        env.DCE_METRICS !== "0",
      ),
    )
    .addOption(new Option("--no-ui", "do not serve the live dashboard at GET /ui (env DCE_UI=0)").default(env.DCE_UI !== "0"))
    .addOption(
      new Option("--log-level <level>", "lowest level logged (env DCE_LOG_LEVEL)")
        .choices(LOG_LEVELS)
        .default(env.DCE_LOG_LEVEL || "info"),
    )
    .addOption(
      new Option("--log-format <format>", "auto: pretty on a terminal, JSON lines otherwise (env DCE_LOG_FORMAT)")
        .choices(LOG_FORMATS)
        .default(env.DCE_LOG_FORMAT || "auto"),
    )
    .action((o) => {
      // Commander checks choices on flags only; an environment fallback is checked here.
      for (const [name, value, allowed] of [
        ["--log-level", o.logLevel, LOG_LEVELS],
        ["--log-format", o.logFormat, LOG_FORMATS],
      ] as const) {
        if (!(allowed as readonly string[]).includes(value)) {
          result = { ok: false, usage: `error: ${name} must be one of ${allowed.join(", ")}, got '${value}'`, exitCode: 2 };
          return;
        }
      }
      result = {
        ok: true,
        command: {
          kind: "serve",
          logLevel: o.logLevel,
          logFormat: o.logFormat,
          options: {
            host: o.host,
            port: o.port,
            ...(o.tlsDir ? { tlsDir: o.tlsDir } : {}),
            insecure: o.insecure,
            devNoAuth: o.devNoAuth,
            dataDir: o.dataDir,
            leaseTtlMs: o.leaseTtlMs,
            maxAttempts: o.maxAttempts,
            maxShardDeaths: o.maxShardDeaths,
            maxMessageBytes: o.maxMessageBytes,
            defaultTile: o.defaultTile,
            maxActiveJobs: o.maxActiveJobs,
            maxActiveJobsPerClient: o.maxActiveJobsPerClient,
            limits: {
              maxDim: o.maxDim,
              maxMatrixBytes: o.maxMatrixBytes,
              maxJobBytes: o.maxJobBytes,
              maxTileBytes: o.maxTileBytes,
              maxShardsPerJob: o.maxShardsPerJob,
            },
            maxLongPollMs: o.maxLongPollMs,
            maxDeadlineMs: o.maxDeadlineMs,
            maxShardsPerAcquire: o.maxShardsPerAcquire,
            maxOpenUploads: o.maxOpenUploads,
            uploadIdleMs: o.uploadIdleMs,
            ...storageOptionsOf(o),
            maxConnections: o.maxConnections,
            maxConcurrentStreams: o.maxConcurrentStreams,
            handshakeTimeoutMs: o.handshakeTimeoutMs,
            idleTimeoutMs: o.idleTimeoutMs,
            requestTimeoutMs: o.requestTimeoutMs,
            keepaliveIntervalMs: o.keepaliveIntervalMs,
            keepaliveTimeoutMs: o.keepaliveTimeoutMs,
            verify: o.verify === "on",
            localStore: o.localStore === "on",
            ...(o.verifyThreads > 0 ? { verifyThreads: o.verifyThreads } : {}),
            quarantineAfter: o.quarantineAfter,
            ...retentionOptionsOf(o),
            metrics: o.metrics,
            ui: o.ui,
          },
        },
      };
    });

  program
    .command("init-certs")
    .description("write a development CA plus server, client and one certificate per worker (pure JavaScript, no openssl)")
    .requiredOption("--out <dir>", "folder to write ca.pem, server.pem, client.pem, worker-1.pem ... worker-N.pem and their keys")
    .option("--hosts <list>", "comma-separated names and IPs for the server certificate", "localhost,127.0.0.1,::1")
    .addOption(new Option("--valid-days <n>", "validity in days").argParser(int("--valid-days", 1)).default(825))
    .addOption(
      new Option(
        "--workers <n>",
        `worker certificates to write, one per worker process: worker-<i>.pem with CN worker-<i> (default ${DEFAULT_DEV_WORKER_CERTS}, at most ${MAX_DEV_WORKER_CERTS})`,
      ).argParser(int("--workers", 0)),
    )
    .option(
      "--worker <name>",
      "only issue one more worker certificate, CN=<name>, from the CA already in --out (writes worker-<name>.pem and worker-<name>-key.pem)",
    )
    .option("--force", "replace a CA already in --out; every certificate it signed (server, client, workers) stops being trusted")
    .action((o) => {
      if (o.worker !== undefined) {
        if (o.workers !== undefined) throw new CommanderError(2, "dce.invalidArg", "--worker and --workers cannot be combined");
        if (o.force)
          throw new CommanderError(
            2,
            "dce.invalidArg",
            "--worker keeps the CA in --out; --force (replace it) cannot be combined with it",
          );
        result = { ok: true, command: { kind: "issue-worker-cert", outDir: o.out, name: o.worker, validDays: o.validDays } };
        return;
      }
      const workers: number = o.workers ?? DEFAULT_DEV_WORKER_CERTS;
      if (workers > MAX_DEV_WORKER_CERTS) {
        throw new CommanderError(2, "dce.invalidArg", `--workers must be at most ${MAX_DEV_WORKER_CERTS}, got ${workers}`);
      }
      const hosts = String(o.hosts)
        .split(",")
        .map((h) => h.trim())
        .filter((h) => h !== "");
      result = {
        ok: true,
        command: { kind: "init-certs", outDir: o.out, hosts, validDays: o.validDays, workers, force: o.force === true },
      };
    });

  // Client tokens: only their SHA-256 is stored, in DATA_DIR/tokens.json. The data dir is
  // the server's: same flag, same DCE_DATA_DIR, same default.
  const dataDirOption = () =>
    new Option("--data-dir <dir>", "the coordinator's data dir, which holds tokens.json (env DCE_DATA_DIR)").default(
      env.DCE_DATA_DIR || DEFAULT_DATA_DIR,
    );
  // `coordinator --data-dir DIR tokens add NAME`: the flag before the subcommand is the
  // server's; it still names the data dir meant, so it wins over the default and the env.
  const tokensDataDir = (sub: Command): string =>
    sub.getOptionValueSource("dataDir") !== "cli" && program.getOptionValueSource("dataDir") === "cli"
      ? String(program.opts().dataDir)
      : String(sub.opts().dataDir);
  const tokens = program
    .command("tokens")
    .description("manage client bearer tokens (a running coordinator picks up changes within a second)");
  for (const action of ["add", "rotate"] as const) {
    tokens
      .command(`${action} <name>`)
      .description(
        action === "add"
          ? "make a token for a new client NAME and print it once (NAME owns the jobs submitted with it)"
          : "replace the token of NAME with a new one, printed once; the old one stops working, NAME keeps its jobs",
      )
      .addOption(
        new Option(
          "--role <role>",
          `client: its own jobs; admin: every job, /metrics, /ui (default: ${action === "add" ? "client" : "unchanged"})`,
        ).choices(TOKEN_ROLES),
      )
      .addOption(tokenWeightOption(action))
      .addOption(dataDirOption())
      .action((name: string, o, sub: Command) => {
        const dataDir = tokensDataDir(sub);
        const weight = o.weight === undefined ? {} : { weight: o.weight as number };
        result =
          action === "add"
            ? { ok: true, command: { kind: "tokens", action, dataDir, name, role: o.role ?? "client", ...weight } }
            : { ok: true, command: { kind: "tokens", action, dataDir, name, ...(o.role ? { role: o.role } : {}), ...weight } };
      });
  }
  tokens
    .command("revoke <name>")
    .description("delete the token of NAME; a running coordinator refuses it within a second")
    .addOption(dataDirOption())
    .action((name: string, _o, sub: Command) => {
      result = { ok: true, command: { kind: "tokens", action: "revoke", dataDir: tokensDataDir(sub), name } };
    });
  addSetWeightCommand(tokens, dataDirOption, tokensDataDir, (command) => (result = { ok: true, command }));
  tokens
    .command("list")
    .description("list token names, roles, creation times and weights (never the tokens)")
    .addOption(dataDirOption())
    .option("--json", "print JSON")
    .action((o, sub: Command) => {
      result = { ok: true, command: { kind: "tokens", action: "list", dataDir: tokensDataDir(sub), json: o.json === true } };
    });

  addDevCommand(program, env, (command) => (result = { ok: true, command }));

  if (envErrors.length > 0) return { ok: false, usage: envErrors.join("\n"), exitCode: 2 };
  try {
    program.parse([...argv], { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version") {
        return { ok: true, command: { kind: "print", text: out } };
      }
      return { ok: false, usage: (out || `${e.message}\n`).trimEnd(), exitCode: 2 };
    }
    throw e;
  }
  return result ?? { ok: false, usage: program.helpInformation(), exitCode: 2 };
}
