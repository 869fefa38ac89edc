import { DEFAULT_CORE_CONFIG } from "@dce/core";
import { formatDurationMs, parseDurationMs } from "@dce/runtime/duration";
import { type Command, CommanderError, Option } from "commander";
import type { RetentionOptions } from "./retention-options.js";

// The coordinator's retention flags: how long a finished job is kept (`--retention`) and
// the longest a client may ask for at submit (`--max-retention`). See retention-options.ts.

/** Parses a duration flag value (`5s`, `30m`, `7d`), naming the flag in its error. */
function duration(flag: string) {
  return (v: string): number => {
    const ms = parseDurationMs(v);
    if (ms === undefined || ms < 1_000) {
      throw new CommanderError(
        2,
        "dce.invalidArg",
        `${flag} must be a duration of at least 1s, a whole number with a unit (ms, s, m, h, d) like 30m or 7d, got '${v}'`,
      );
    }
    return ms;
  };
}

/**
 * Adds `--retention` and `--max-retention` to the `coordinator` command, each with its
 * `DCE_*` environment fallback (the flag wins); a bad environment value is added to `envErrors`.
 */
export function addRetentionOptions(
  program: Command,
  env: Readonly<Record<string, string | undefined>>,
  envErrors: string[],
): void {
  for (const [flag, envName, description, fallback] of [
    [
      "--retention",
      "DCE_RETENTION",
      "how long a finished job and its result are kept before they are deleted, unless the job asked for its own",
      DEFAULT_CORE_CONFIG.retentionMs,
    ],
    [
      "--max-retention",
      "DCE_MAX_RETENTION",
      "the longest retention a job may ask for at submit (dce submit --retention)",
      DEFAULT_CORE_CONFIG.maxRetentionMs,
    ],
  ] as const) {
    const parse = duration(flag);
    let value: number = fallback;
    const fromEnv = env[envName];
    if (fromEnv !== undefined && fromEnv !== "") {
      try {
        value = parse(fromEnv);
      } catch (e) {
        envErrors.push(`${envName}: ${(e as Error).message}`);
      }
    }
    program.addOption(
      new Option(`${flag} <duration>`, `${description} (env ${envName})`)
        .argParser(parse)
        .default(value, formatDurationMs(value)),
    );
  }
}

/**
 * The retention settings of the parsed `coordinator` options.
 * @throws CommanderError (usage, exit 2) when `--retention` is above `--max-retention`.
 */
export function retentionOptionsOf(o: { retention: number; maxRetention: number }): RetentionOptions {
  if (o.retention > o.maxRetention) {
    throw new CommanderError(
      2,
      "dce.invalidArg",
      `--retention ${formatDurationMs(o.retention)} is above --max-retention ${formatDurationMs(o.maxRetention)}; raise --max-retention or lower --retention`,
    );
  }
  return { retentionMs: o.retention, maxRetentionMs: o.maxRetention };
}
