/**
 * The `coordinator dev` subcommand's flags. Pure like the rest of `args.ts`, which
 * adds the subcommand through {@link addDevCommand}.
 *
 * @module
 */
import { LOG_LEVELS } from "@dce/runtime/logging";
import { type Command, CommanderError, Option } from "commander";
import { MAX_DEV_WORKER_CERTS } from "../dev-cert-counts.js";

/** What `coordinator dev` asks for: a development cluster in one process tree. */
export interface DevCommand {
  readonly kind: "dev";
  /** Folder for certificates, tokens and the data dir (`DIR/data`); created, and reused when it exists. */
  readonly dir: string;
  /** Port on 127.0.0.1; 0 picks a free one. */
  readonly port: number;
  /** Worker processes to run. */
  readonly workers: number;
  /** Compute threads per worker; undefined: the cores shared out among the workers. */
  readonly threads: number | undefined;
  /** Time each worker gets to drain on shutdown before it is killed, in ms. */
  readonly shutdownGraceMs: number;
  readonly logLevel: string;
}

/** The folder `coordinator dev` uses when none is given. */
export const DEFAULT_DEV_DIR = ".dce-dev";

/** Workers `coordinator dev` runs when none are asked for. */
export const DEFAULT_DEV_WORKERS = 2;

/** Port of the development cluster when none is given: the coordinator's default. */
export const DEFAULT_DEV_PORT = 7070;

/** Drain time of each worker by default, in ms: the worker's own default. */
export const DEFAULT_DEV_SHUTDOWN_GRACE_MS = 10_000;

function int(name: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
      throw new CommanderError(2, "dce.invalidArg", `${name} must be an integer ${range}, got '${v}'`);
    }
    return n;
  };
}

/**
 * Adds `dev` to the `coordinator` program. Each flag has a `DCE_*` environment
 * fallback, checked like the flag (a bad value is a usage error); the flag wins.
 * @param onCommand receives the parsed command when `dev` is what the command line asks for.
 */
export function addDevCommand(
  program: Command,
  env: Readonly<Record<string, string | undefined>>,
  onCommand: (command: DevCommand) => void,
): void {
  // An environment fallback goes through the flag's parser when the flag is absent.
  const fromEnv = (name: string, parse: (v: string) => number): number | undefined => {
    const v = env[name];
    return v === undefined || v === "" ? undefined : parse(v);
  };
  const workers = int("--workers", 1, MAX_DEV_WORKER_CERTS);
  const port = int("--port", 0, 65_535);
  const threads = int("--threads", 1);
  const grace = int("--shutdown-grace-ms", 0);
  program
    .command("dev")
    .description(
      "run a development cluster: certificates and a client token in --dir, a TLS coordinator with authentication on 127.0.0.1 and N worker processes; prints the DCE_* exports to use it (eval them), stops on SIGINT/SIGTERM",
    )
    .addOption(
      new Option("--workers <n>", `worker processes (env DCE_DEV_WORKERS; default ${DEFAULT_DEV_WORKERS})`).argParser(workers),
    )
    .addOption(
      new Option("--port <n>", `port on 127.0.0.1, 0 picks a free one (env DCE_PORT; default ${DEFAULT_DEV_PORT})`).argParser(
        port,
      ),
    )
    .addOption(
      new Option(
        "--dir <dir>",
        `folder for certs/, data/ and the tokens, reused by the next run (env DCE_DEV_DIR; default ${DEFAULT_DEV_DIR})`,
      ),
    )
    .addOption(
      new Option("--threads <n>", "compute threads per worker (env DCE_WORKER_THREADS; default: the cores shared out)").argParser(
        threads,
      ),
    )
    .addOption(
      new Option(
        "--shutdown-grace-ms <ms>",
        `time each worker gets to drain on SIGINT/SIGTERM before it is killed (env DCE_SHUTDOWN_GRACE_MS; default ${DEFAULT_DEV_SHUTDOWN_GRACE_MS})`,
      ).argParser(grace),
    )
    .addOption(new Option("--log-level <level>", "lowest level logged (env DCE_LOG_LEVEL; default info)").choices(LOG_LEVELS))
    .action(
      (o: { workers?: number; port?: number; dir?: string; threads?: number; shutdownGraceMs?: number; logLevel?: string }) => {
        const logLevel = o.logLevel ?? (env.DCE_LOG_LEVEL || "info");
        if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
          throw new CommanderError(
            2,
            "dce.invalidArg",
            `DCE_LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got '${logLevel}'`,
          );
        }
        onCommand({
          kind: "dev",
          dir: o.dir ?? (env.DCE_DEV_DIR || DEFAULT_DEV_DIR),
          port: o.port ?? fromEnv("DCE_PORT", port) ?? DEFAULT_DEV_PORT,
          workers: o.workers ?? fromEnv("DCE_DEV_WORKERS", workers) ?? DEFAULT_DEV_WORKERS,
          threads: o.threads ?? fromEnv("DCE_WORKER_THREADS", threads),
          shutdownGraceMs: o.shutdownGraceMs ?? fromEnv("DCE_SHUTDOWN_GRACE_MS", grace) ?? DEFAULT_DEV_SHUTDOWN_GRACE_MS,
          logLevel,
        });
      },
    );
}
