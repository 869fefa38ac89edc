/**
 * The files of a development cluster's folder, made on the first run and reused on the
 * next ones:
 *
 * ```text
 * DIR/certs/      ca.pem, server.pem, worker-dev-<i>.pem and their keys (0600)
 * DIR/data/       the coordinator's data dir (blobs, journal, tokens.json)
 * DIR/token       the client token `dev` (0600)
 * DIR/admin-token the admin token `dev-admin` (0600), for the dashboard
 * ```
 *
 * The CA is never replaced: certificates a previous run issued (and copied elsewhere)
 * stay valid. The tokens are kept in plain text, unlike those of `coordinator tokens`:
 * a restarted dev cluster then answers to the token a shell, a `.env` file or a test
 * configuration already holds, and the folder already holds keys worth as much (the
 * CA key issues worker certificates), so its owner-only mode protects both alike.
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, open, rename, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { generateDevCertificates, issueWorkerCertificate } from "../certs.js";
import { addToken, hashToken, readTokenFile, type TokenRole } from "../tokens.js";

/** Absolute paths of the files a development cluster runs with. */
export interface DevFiles {
  /** The folder itself. */
  readonly dir: string;
  /** Certificate folder, the coordinator's `--tls-dir`. */
  readonly tlsDir: string;
  /** The CA clients trust (`DCE_CA`). */
  readonly caPath: string;
  /** The coordinator's data dir. */
  readonly dataDir: string;
  /** One certificate per worker, in order: worker i presents `workers[i - 1]`. */
  readonly workers: readonly { readonly name: string; readonly cert: string; readonly key: string }[];
  /** Client token `dev`: a valid one, printed as `DCE_TOKEN`. */
  readonly token: string;
  /** Admin token `dev-admin`: for the dashboard and `/metrics`. */
  readonly adminToken: string;
  /** True when this run made the CA; false when it reused the one in the folder. */
  readonly createdCa: boolean;
}

/** The worker identity (certificate CN and worker name) of the i-th worker, from 1. */
export function devWorkerName(i: number): string {
  return `dev-${i}`;
}

/**
 * Makes or reuses everything in `dir` for a cluster of `workers` workers: the CA and
 * server certificate, a certificate per worker (missing ones issued by the existing CA),
 * the data dir, and the two tokens. Never replaces a CA.
 * @throws when a file cannot be written or an existing CA cannot be read.
 */
export async function prepareDevFiles(dir: string, workers: number): Promise<DevFiles> {
  const root = resolve(dir);
  // Owner-only: the folder holds the CA key and the tokens.
  await mkdir(root, { recursive: true, mode: 0o700 });
  const tlsDir = join(root, "certs");
  const caPath = join(tlsDir, "ca.pem");
  const createdCa = !existsSync(caPath) && !existsSync(join(tlsDir, "ca-key.pem"));
  // A CA without its server certificate is left alone: the coordinator then says which file is missing.
  if (createdCa) await generateDevCertificates({ outDir: tlsDir, workers: 0 });
  const certs: { name: string; cert: string; key: string }[] = [];
  for (let i = 1; i <= workers; i++) {
    const name = devWorkerName(i);
    const paths = { cert: join(tlsDir, `worker-${name}.pem`), key: join(tlsDir, `worker-${name}-key.pem`) };
    if (!existsSync(paths.cert) || !existsSync(paths.key)) await issueWorkerCertificate({ dir: tlsDir, name });
    certs.push({ name, ...paths });
  }
  const dataDir = join(root, "data");
  const token = await ensureDevToken(dataDir, join(root, "token"), "dev", "client");
  const adminToken = await ensureDevToken(dataDir, join(root, "admin-token"), "dev-admin", "admin");
  return { dir: root, tlsDir, caPath, dataDir, workers: certs, token, adminToken, createdCa };
}

/**
 * The token kept at `copyPath` when the data dir's token file still accepts it as
 * `name` with `role`; otherwise a new one (added, or rotated over a stale entry),
 * written to `copyPath` with mode 0600.
 */
export async function ensureDevToken(dataDir: string, copyPath: string, name: string, role: TokenRole): Promise<string> {
  let kept: string | undefined;
  try {
    kept = readFileSync(copyPath, "utf8").trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  const entry = readTokenFile(dataDir).find((e) => e.name === name);
  if (kept && entry?.role === role && entry.sha256 === hashToken(kept)) return kept;
  const token = await addToken(dataDir, name, role, { replace: entry !== undefined });
  await writePrivateFile(copyPath, `${token}\n`);
  return token;
}

/** Writes `text` through a sibling temp file with mode 0600, then renames it into place. */
async function writePrivateFile(path: string, text: string): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    const handle = await open(tmp, "wx", 0o600);
    try {
      await handle.writeFile(text, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await chmod(tmp, 0o600);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
