/**
 * The `dce` command (bin/dce.js imports this module, which runs at once).
 * The only module that touches `process`: it reads argv and env, wires files,
 * streams and signals into {@link runCommand}, and sets the exit code.
 *
 * @packageDocumentation
 */
import { readFileSync } from "node:fs";
import { open, readFile, rename, rm } from "node:fs/promises";
import { tolerateClosedPipe } from "@dce/runtime/closed-pipe";
import { watchLauncher } from "@dce/runtime/launcher";
import { parseArgs } from "./cli-args.js";
import { EXIT_FAILURE, runCommand } from "./cli-run.js";
import { createClient } from "./client.js";

function readVersion(): string {
  try {
    const text = readFileSync(new URL("../package.json", import.meta.url), "utf8");
    const version: unknown = (JSON.parse(text) as { version?: unknown }).version;
    return typeof version === "string" ? version : "0.0.0";
  } catch {
    return "0.0.0";
  }
}

/** Writes `parts` in order to a temporary file next to `path`, then renames: readers never see half a file. */
async function writeFileAtomic(path: string, parts: readonly Uint8Array[]): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    const fh = await open(tmp, "w");
    try {
      let at = 0;
      for (const part of parts) {
        for (let done = 0; done < part.byteLength; ) {
          const { bytesWritten } = await fh.write(part, done, part.byteLength - done, at);
          done += bytesWritten;
          at += bytesWritten;
        }
      }
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => {});
    throw e;
  }
}

async function main(): Promise<number> {
  // A reader that goes away (`dce list --json | head -1`, `dce submit … | head -1`) is no
  // error: the command goes on (submit still writes C) and ends with its own exit code.
  tolerateClosedPipe(process.stdout, (e) => {
    process.stderr.write(`error: cannot write to stdout: ${e.message}\n`);
    process.exitCode = EXIT_FAILURE;
  });
  tolerateClosedPipe(process.stderr, () => {
    process.exitCode = EXIT_FAILURE;
  });
  const parsed = parseArgs(process.argv.slice(2), process.env, { version: readVersion() });
  if (!parsed.ok) {
    (parsed.exitCode === 0 ? process.stdout : process.stderr).write(parsed.usage);
    return parsed.exitCode;
  }

  // First SIGINT/SIGTERM stops waiting (the job keeps running); a second exits at once.
  const controller = new AbortController();
  const onSignal = (): void => {
    if (controller.signal.aborted) process.exit(EXIT_FAILURE);
    controller.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  // Under npx, a supervisor's SIGTERM stops npm and sh but not this process: act on it.
  watchLauncher(process, () => process.kill(process.pid, "SIGTERM"));
  try {
    return await runCommand(parsed.command, {
      createClient,
      readFile: (path) => readFile(path),
      writeFile: writeFileAtomic,
      stdout: process.stdout,
      stderr: process.stderr,
      ...(process.stderr.isTTY ? { stderrTty: process.stderr } : {}),
      signal: controller.signal,
    });
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

main().then(
  (code) => {
    process.exitCode ||= code; // a failed write to stdout already set 1
  },
  (e: unknown) => {
    // runCommand reports its own errors; this is a bug in the CLI itself.
    process.stderr.write(`error: internal: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = EXIT_FAILURE;
  },
);
