import { type Command, CommanderError, Option } from "commander";
import type { StorageOptions } from "./storage-options.js";

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const BYTE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
};

/**
 * Parses a duration such as `90s`, `15m`, `1h`, `7d` or `250ms` into ms (a bare number is
 * ms). Throws a CommanderError (exit 2) naming `flag` for anything else.
 */
export function parseDuration(flag: string, text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  const ms = m ? Math.round(Number(m[1]) * (DURATION_UNITS[m[2] ?? "ms"] ?? Number.NaN)) : Number.NaN;
  if (!Number.isSafeInteger(ms)) {
    throw new CommanderError(2, "dce.invalidArg", `${flag} must be a duration like 90s, 15m, 1h or 250ms, got '${text}'`);
  }
  return ms;
}

/**
 * Parses a size such as `512MiB`, `2GiB`, `1GB` or `1048576` into bytes (units are case
 * insensitive; KiB, MiB, GiB, TiB are powers of 1024, KB, MB, GB, TB of 1000). Throws a
 * CommanderError (exit 2) naming `flag` for anything else.
 */
export function parseByteSize(flag: string, text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = BYTE_UNITS[(m?.[2] ?? "").toLowerCase()];
  const bytes = m && unit !== undefined ? Math.round(Number(m[1]) * unit) : Number.NaN;
  if (!Number.isSafeInteger(bytes)) {
    throw new CommanderError(2, "dce.invalidArg", `${flag} must be a size like 512MiB, 2GiB or 1073741824, got '${text}'`);
  }
  return bytes;
}

/**
 * Adds `--blob-grace`, `--gc-interval` and `--min-free-bytes` to the `coordinator`
 * command, each with its `DCE_*` fallback (a bad one is pushed to `envErrors`).
 */
export function addStorageFlags(
  program: Command,
  env: Readonly<Record<string, string | undefined>>,
  envErrors: string[],
): Command {
  const flag = <T>(
    spec: string,
    envName: string,
    description: string,
    parse: (f: string, t: string) => T,
    fallback: T,
    shown: string,
  ) => {
    const name = spec.split(" ")[0] ?? spec;
    let value = fallback;
    const fromEnv = env[envName];
    if (fromEnv !== undefined && fromEnv !== "") {
      try {
        value = parse(name, fromEnv);
      } catch (e) {
        envErrors.push(`${envName}: ${(e as Error).message}`);
      }
    }
    const option = new Option(spec, `${description} (env ${envName})`).argParser((t) => parse(name, t));
    return value === fallback ? option.default(value, shown) : option.default(value);
  };
  return program
    .addOption(
      flag(
        "--blob-grace <duration>",
        "DCE_BLOB_GRACE",
        "keep a blob no job references at least this long (an upload not yet submitted); uploading the same bytes again restarts it",
        parseDuration,
        3_600_000,
        "1h",
      ),
    )
    .addOption(
      flag(
        "--gc-interval <duration>",
        "DCE_GC_INTERVAL",
        "how often unreferenced blobs are deleted; 0 = never on its own",
        parseDuration,
        60_000,
        "60s",
      ),
    )
    .addOption(
      flag(
        "--min-free-bytes <size>",
        "DCE_MIN_FREE_BYTES",
        "below this much free space in the data dir, new uploads and submits get RESOURCE_EXHAUSTED while running jobs finish; auto = the larger of 1 GiB and 5% of its file system",
        (f, t): number | "auto" => (t.trim() === "auto" ? "auto" : parseByteSize(f, t)),
        "auto" as number | "auto",
        "auto",
      ),
    );
}

/** The {@link StorageOptions} of parsed flags. */
export function storageOptionsOf(o: { blobGrace: number; gcInterval: number; minFreeBytes: number | "auto" }): StorageOptions {
  return {
    blobGraceMs: o.blobGrace,
    gcIntervalMs: o.gcInterval,
    ...(o.minFreeBytes !== "auto" ? { minFreeBytes: o.minFreeBytes } : {}),
  };
}
