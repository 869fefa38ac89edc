// The benchmarks' command-line options: parsed by node:util, with --help printing the usage
// that opens the script (its leading `//` comment).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

/**
 * Parses `options` (node:util parseArgs) for the script at `scriptUrl` (its
 * import.meta.url). With --help or -h, prints the script's opening comment and exits 0.
 */
export function parseOptions(scriptUrl, options) {
  const { values } = parseArgs({ options: { ...options, help: { type: "boolean", short: "h", default: false } } });
  if (values.help) {
    const lines = readFileSync(fileURLToPath(scriptUrl), "utf8").split("\n");
    const end = lines.findIndex((l) => !l.startsWith("//"));
    console.log(
      lines
        .slice(0, end)
        .map((l) => l.replace(/^\/\/ ?/, ""))
        .join("\n"),
    );
    process.exit(0);
  }
  return values;
}
