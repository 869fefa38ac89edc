import { type Command, CommanderError, Option } from "commander";
import { MAX_TOKEN_WEIGHT } from "./tokens.js";

// The fair-share weight of a client token on the `coordinator tokens` command line:
// `tokens add|rotate NAME --weight N` and `tokens set-weight NAME N`.

/** `coordinator tokens set-weight NAME N`: changes a token's weight, keeping the token. */
export interface SetWeightCommand {
  kind: "tokens";
  action: "set-weight";
  dataDir: string;
  name: string;
  weight: number;
}

/** Parses a weight: an integer from 1 to {@link MAX_TOKEN_WEIGHT}, else a usage error (exit 2). */
export function parseTokenWeight(v: string): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isInteger(n) || n < 1 || n > MAX_TOKEN_WEIGHT) {
    throw new CommanderError(2, "dce.invalidArg", `--weight must be an integer from 1 to ${MAX_TOKEN_WEIGHT}, got '${v}'`);
  }
  return n;
}

/** The `--weight <n>` option of `tokens add` (default 1) and `tokens rotate` (default: unchanged). */
export function tokenWeightOption(action: "add" | "rotate"): Option {
  return new Option(
    "--weight <n>",
    `share of the workers relative to other clients', 1 to ${MAX_TOKEN_WEIGHT} (default: ${action === "add" ? "1" : "unchanged"})`,
  ).argParser(parseTokenWeight);
}

/** Adds `set-weight NAME N` under the `tokens` command. */
export function addSetWeightCommand(
  tokens: Command,
  dataDirOption: () => Option,
  dataDirOf: (sub: Command) => string,
  onCommand: (command: SetWeightCommand) => void,
): void {
  tokens
    .command("set-weight <name> <weight>")
    .description("change the fair-share weight of NAME's token (the token stays); it applies from NAME's next submit")
    .addOption(dataDirOption())
    .action((name: string, weight: string, _o, sub: Command) => {
      onCommand({ kind: "tokens", action: "set-weight", dataDir: dataDirOf(sub), name, weight: parseTokenWeight(weight) });
    });
}
