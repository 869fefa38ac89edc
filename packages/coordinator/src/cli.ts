import { readdirSync } from "node:fs";
import { basename, resolve } from "node:path";
import { tolerateClosedPipe } from "@dce/runtime/closed-pipe";
import { watchLauncher } from "@dce/runtime/launcher";
import { createLogger } from "@dce/runtime/logging";
import { type CoordinatorCommand, parseArgs } from "./args.js";
import { ExistingCaError, generateDevCertificates, issueWorkerCertificate } from "./certs.js";
import { runDevCommand } from "./dev/dev-command.js";
import { parseCrashPoint } from "./journal.js";
import { startCoordinator } from "./server.js";
import { parseGcCrashPoint } from "./shell/blob-gc.js";
import { DataDirError } from "./storage-errors.js";
import { addToken, readTokenFile, revokeToken, setTokenWeight, TokenFileError, tokenFilePath } from "./tokens.js";

/** "worker-1.pem", "worker-1.pem, worker-2.pem" or "worker-1.pem … worker-N.pem". */
function workerFileRange(n: number): string {
  if (n <= 2) return Array.from({ length: n }, (_, i) => `worker-${i + 1}.pem`).join(", ");
  return `worker-1.pem … worker-${n}.pem`;
}

/** Entry point of the `coordinator` bin. The only module that touches `process`. */
async function main(): Promise<number> {
  // A reader that goes away (`--help | head`, logs piped to a pager that quit) is no crash.
  tolerateClosedPipe(process.stdout, () => {
    process.exitCode = 1;
  });
  tolerateClosedPipe(process.stderr, () => {});
  const parsed = parseArgs(process.argv.slice(2), process.env);
  if (!parsed.ok) {
    process.stderr.write(`${parsed.usage}\n`);
    return parsed.exitCode;
  }
  const cmd = parsed.command;
  if (cmd.kind === "print") {
    process.stdout.write(cmd.text);
    return 0;
  }
  if (cmd.kind === "init-certs") return await runInitCerts(cmd);
  if (cmd.kind === "issue-worker-cert") {
    try {
      const paths = await issueWorkerCertificate({ dir: cmd.outDir, name: cmd.name, validDays: cmd.validDays });
      process.stdout.write(`wrote ${paths.cert} and ${paths.key} (worker identity ${cmd.name})\n`);
      return 0;
    } catch (e) {
      process.stderr.write(`coordinator: ${(e as Error).message}\n`);
      return 2;
    }
  }
  if (cmd.kind === "tokens") return await runTokens(cmd);
  if (cmd.kind === "dev") return await runDevCommand(cmd, process);
  const logger = createLogger({
    level: cmd.logLevel,
    format: cmd.logFormat,
    isTty: process.stderr.isTTY === true,
    base: { svc: "coordinator", pid: process.pid },
  });
  let running: Awaited<ReturnType<typeof startCoordinator>>;
  try {
    // DCE_TEST_CRASH_AT=POINT[:N] is fault injection for the crash-point tests only.
    const testCrashAt = parseCrashPoint(process.env.DCE_TEST_CRASH_AT);
    // DCE_TEST_GC_CRASH_AT=POINT kills it at a step of a blob collection pass, likewise.
    const testGcCrashAt = parseGcCrashPoint(process.env.DCE_TEST_GC_CRASH_AT);
    running = await startCoordinator({
      ...cmd.options,
      logger,
      // The journal could not be written: exit once the waiting calls are answered, and a restart
      // recovers from the journal (test/integration/disk-full.test.ts).
      onFatal: () => setTimeout(() => process.exit(70), 200),
      ...(testCrashAt ? { testCrashAt } : {}),
      ...(testGcCrashAt ? { testGcCrashAt, testKill: () => process.kill(process.pid, "SIGKILL") } : {}),
    });
  } catch (e) {
    // A full or failing data dir is no usage error: exit 1, like a port in use.
    if (e instanceof DataDirError) {
      process.stderr.write(`coordinator: ${e.rawMessage}\n`);
      return 1;
    }
    process.stderr.write(`coordinator: ${(e as Error).message}\n`);
    return (e as NodeJS.ErrnoException).code === "EADDRINUSE" ? 1 : 2;
  }
  process.stdout.write(`listening on ${running.url}\n`);
  logger.info(
    {
      url: running.url,
      auth: running.auth,
      dataDir: resolve(running.coordinator.config.dataDir),
      healthz: `${running.url}/healthz`,
      ...(cmd.options.metrics !== false ? { metrics: `${running.url}/metrics` } : {}),
      ...(cmd.options.ui !== false ? { dashboard: `${running.url}/ui` } : {}),
    },
    "coordinator ready",
  );
  return await new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        // A second signal means "now": skip the drain.
        resolve(1);
        return;
      }
      logger.info({ signal: sig }, "shutting down");
      running.close().then(
        () => resolve(0),
        (e: unknown) => {
          logger.error({ err: e }, "shutdown failed");
          resolve(1);
        },
      );
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    // Under npx, a supervisor's SIGTERM stops npm and sh but not this process: act on it.
    watchLauncher(process, () => process.kill(process.pid, "SIGTERM"));
  });
}

/**
 * `coordinator init-certs`: a new development CA and its certificates. A CA already in
 * the folder is kept unless `--force`: replacing it leaves every certificate it signed
 * untrusted, on this machine and wherever copies went.
 */
async function runInitCerts(cmd: Extract<CoordinatorCommand, { kind: "init-certs" }>): Promise<number> {
  let paths: Awaited<ReturnType<typeof generateDevCertificates>>;
  try {
    paths = await generateDevCertificates({
      outDir: cmd.outDir,
      hosts: cmd.hosts,
      validDays: cmd.validDays,
      workers: cmd.workers,
      replaceCa: cmd.force,
    });
  } catch (e) {
    if (!(e instanceof ExistingCaError)) throw e;
    process.stderr.write(
      `coordinator init-certs: ${e.caCert} already exists; nothing was written. A new CA would make every certificate the current one signed untrusted (server.pem, client.pem, worker-*.pem, and copies elsewhere).\n` +
        `  To add a worker certificate signed by this CA: coordinator init-certs --out ${cmd.outDir} --worker NAME\n` +
        `  To replace the CA anyway: coordinator init-certs --out ${cmd.outDir} --force\n`,
    );
    return 2;
  }
  const workers = paths.workers.length === 0 ? "" : ` one per worker: ${workerFileRange(paths.workers.length)},`;
  process.stdout.write(`wrote development certificates to ${paths.dir} (ca.pem, server.pem,${workers} client.pem and keys)\n`);
  if (paths.replacedCa) {
    // Worker certificates this run did not rewrite (an earlier --workers N or --worker NAME) are the old CA's.
    const written = new Set(paths.workers.map((w) => basename(w.cert)));
    const stale = readdirSync(paths.dir).filter((f) => /^worker-.+\.pem$/.test(f) && !f.endsWith("-key.pem") && !written.has(f));
    process.stderr.write(
      `coordinator init-certs: replaced the CA in ${paths.dir}: certificates signed by the previous CA are no longer valid${
        stale.length === 0 ? "" : `, among them ${stale.sort().join(", ")} in this folder`
      }. Restart the coordinator (its --tls-dir) with the new files, and give workers and clients the new ca.pem (--ca / DCE_CA) and workers new certificates (--cert / --key)\n`,
    );
  }
  return 0;
}

/** `coordinator tokens …`: edits DATA_DIR/tokens.json. A new token goes to stdout once, alone on its line. */
async function runTokens(cmd: Extract<CoordinatorCommand, { kind: "tokens" }>): Promise<number> {
  try {
    switch (cmd.action) {
      case "add":
      case "rotate": {
        const token = await addToken(cmd.dataDir, cmd.name, cmd.role, {
          replace: cmd.action === "rotate",
          ...(cmd.weight === undefined ? {} : { weight: cmd.weight }),
        });
        process.stdout.write(`${token}\n`);
        // The file named in full: a coordinator with another --data-dir / DCE_DATA_DIR would not know the token.
        process.stderr.write(
          `token for ${cmd.name} ${cmd.action === "add" ? "created" : "rotated"} in ${resolve(tokenFilePath(cmd.dataDir))}, for a coordinator with --data-dir ${resolve(cmd.dataDir)} (or DCE_DATA_DIR); it is shown only this once (the coordinator keeps its hash)\n`,
        );
        return 0;
      }
      case "revoke":
        await revokeToken(cmd.dataDir, cmd.name);
        process.stderr.write(`token for ${cmd.name} revoked in ${resolve(tokenFilePath(cmd.dataDir))}\n`);
        return 0;
      case "set-weight":
        await setTokenWeight(cmd.dataDir, cmd.name, cmd.weight);
        process.stderr.write(
          `weight of ${cmd.name} set to ${cmd.weight} in ${resolve(tokenFilePath(cmd.dataDir))}; it applies from ${cmd.name}'s next submit\n`,
        );
        return 0;
      case "list": {
        const entries = readTokenFile(cmd.dataDir).map(({ name, role, createdAt, weight }) => ({
          name,
          role,
          createdAt,
          weight,
        }));
        if (cmd.json) process.stdout.write(`${JSON.stringify(entries)}\n`);
        else for (const e of entries) process.stdout.write(`${e.name}\t${e.role}\t${e.createdAt}\t${e.weight}\n`);
        return 0;
      }
    }
  } catch (e) {
    process.stderr.write(`coordinator tokens: ${e instanceof DataDirError ? e.rawMessage : (e as Error).message}\n`);
    return e instanceof TokenFileError ? 2 : 1;
  }
}

main().then(
  (code) => {
    // A write to stdout that failed other than by a closed pipe set 1 already (tolerateClosedPipe).
    const exit = code || (process.exitCode === 1 ? 1 : 0);
    process.exitCode = exit;
    // Flush pino and let pending writes finish, then leave even if a socket lingers.
    setTimeout(() => process.exit(exit), 50).unref();
  },
  (e: unknown) => {
    process.stderr.write(`coordinator: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
