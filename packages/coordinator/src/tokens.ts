/**
 * Client bearer tokens: the token file in the data dir and its reader.
 *
 * A token is `dce_` followed by 256 random bits in base64url. The coordinator keeps
 * only the SHA-256 of each token, in `DATA_DIR/tokens.json` (mode 0600), with the
 * token's name (the client identity its jobs belong to), role and fair-share weight
 * (`weight`, absent in files written before weights: 1). `coordinator tokens
 * add NAME` prints a new token once; nobody can read it back. A running coordinator
 * notices a changed file within {@link TOKEN_RELOAD_INTERVAL_MS}, so a revocation
 * takes effect without a restart.
 *
 * @module
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { chmod, mkdir, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { clipCodePoints, MAX_CLIENT_WEIGHT, quote } from "@dce/core";
import { dataDirError, withDataDirAsync } from "./storage-errors.js";

/** Roles a token can carry (the `worker` role comes from a certificate only). */
export type TokenRole = "client" | "admin";

/** The roles {@link addToken} accepts. */
export const TOKEN_ROLES: readonly TokenRole[] = ["client", "admin"];

/** One entry of the token file. The token itself is never stored. */
export interface TokenEntry {
  /** Client identity: the jobs submitted with this token belong to it. */
  readonly name: string;
  readonly role: TokenRole;
  /** Lower-case hex SHA-256 of the token string. */
  readonly sha256: string;
  /**
   * The client's share of the workers relative to other clients' (1..{@link MAX_TOKEN_WEIGHT}):
   * backlogged clients get worker time in proportion to their weights. Default 1.
   */
  readonly weight: number;
  /** ISO-8601 time the token was made. */
  readonly createdAt: string;
}

/** The largest token weight (the core's limit on a client weight). */
export const MAX_TOKEN_WEIGHT = MAX_CLIENT_WEIGHT;

/** Name of the token file inside the data dir. */
export const TOKEN_FILE = "tokens.json";

/** How often a running coordinator looks at the token file for changes, in ms. */
export const TOKEN_RELOAD_INTERVAL_MS = 250;

/** Token names: the client identity that owns jobs, shown in logs. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
/** Longest token string examined; anything longer cannot be ours. */
const MAX_TOKEN_CHARS = 256;

/** A problem with the token file or a token command; the CLI prints the message and exits 2. */
export class TokenFileError extends Error {
  override readonly name = "TokenFileError";
}

/** Path of the token file of a data dir. */
export function tokenFilePath(dataDir: string): string {
  return join(dataDir, TOKEN_FILE);
}

/** Throws a {@link TokenFileError} unless `name` is a valid token name. */
export function checkTokenName(name: string): void {
  if (!NAME.test(name)) {
    throw new TokenFileError(
      `token name ${JSON.stringify(clipCodePoints(name, 80))} is not valid: 1 to 64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit`,
    );
  }
}

/** Throws a {@link TokenFileError} unless `weight` is an integer from 1 to {@link MAX_TOKEN_WEIGHT}. */
export function checkTokenWeight(weight: number): void {
  if (!Number.isInteger(weight) || weight < 1 || weight > MAX_TOKEN_WEIGHT) {
    throw new TokenFileError(`weight must be an integer from 1 to ${MAX_TOKEN_WEIGHT}, got ${weight}`);
  }
}

/** The SHA-256 of a token string, as stored in the token file. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** Reads and validates the token file; a missing file is an empty list. */
export function readTokenFile(dataDir: string): TokenEntry[] {
  let text: string;
  try {
    text = readFileSync(tokenFilePath(dataDir), "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  return parseTokenFile(text);
}

/** Parses the token file's JSON; throws a {@link TokenFileError} naming what is wrong. */
export function parseTokenFile(text: string): TokenEntry[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new TokenFileError(`${TOKEN_FILE} is not valid JSON: ${(e as Error).message}`);
  }
  const tokens = (doc as { version?: unknown; tokens?: unknown } | null)?.tokens;
  if ((doc as { version?: unknown } | null)?.version !== 1 || !Array.isArray(tokens)) {
    throw new TokenFileError(`${TOKEN_FILE} must be { "version": 1, "tokens": [...] }`);
  }
  const seen = new Set<string>();
  return tokens.map((t: unknown, i): TokenEntry => {
    const e = t as Partial<Record<keyof TokenEntry, unknown>> | null;
    if (
      typeof e?.name !== "string" ||
      !NAME.test(e.name) ||
      !TOKEN_ROLES.includes(e.role as TokenRole) ||
      typeof e.sha256 !== "string" ||
      !SHA256_HEX.test(e.sha256) ||
      typeof e.createdAt !== "string" ||
      // Files written before weights have none: weight 1.
      (e.weight !== undefined &&
        (typeof e.weight !== "number" || !Number.isInteger(e.weight) || e.weight < 1 || e.weight > MAX_TOKEN_WEIGHT))
    ) {
      throw new TokenFileError(`${TOKEN_FILE}: entry ${i} is malformed`);
    }
    if (seen.has(e.name)) throw new TokenFileError(`${TOKEN_FILE}: name ${e.name} is listed twice`);
    seen.add(e.name);
    const weight = typeof e.weight === "number" ? e.weight : 1;
    return { name: e.name, role: e.role as TokenRole, sha256: e.sha256, createdAt: e.createdAt, weight };
  });
}

/**
 * Makes a new token for `name` and stores its hash. With `replace`, an existing token
 * of that name is replaced (rotation: the old token stops working, the jobs stay with
 * the name, the role and weight stay unless given); without it, an existing name is
 * an error. `role` defaults to `client`, `weight` to 1.
 * @returns the token, which is not stored anywhere: show it once.
 * @throws TokenFileError for a bad name or role, or an existing name without `replace`.
 */
export async function addToken(
  dataDir: string,
  name: string,
  role: TokenRole | undefined,
  opts: { replace?: boolean; now?: Date; weight?: number } = {},
): Promise<string> {
  checkTokenName(name);
  if (opts.weight !== undefined) checkTokenWeight(opts.weight);
  if (role !== undefined && !TOKEN_ROLES.includes(role)) {
    throw new TokenFileError(`role must be one of ${TOKEN_ROLES.join(", ")}, got ${String(role)}`);
  }
  const token = `dce_${randomBytes(32).toString("base64url")}`;
  await updateTokenFile(dataDir, (entries) => {
    const existing = entries.findIndex((e) => e.name === name);
    if (existing >= 0 && !opts.replace) {
      throw new TokenFileError(`a token named ${name} exists; revoke it first or rotate it (coordinator tokens rotate ${name})`);
    }
    if (existing < 0 && opts.replace) throw new TokenFileError(`no token named ${name}`);
    const entry: TokenEntry = {
      name,
      // A rotation keeps the role unless a new one is given; a new token is a client by default.
      role: role ?? entries[existing]?.role ?? "client",
      sha256: hashToken(token),
      createdAt: (opts.now ?? new Date()).toISOString(),
      weight: opts.weight ?? entries[existing]?.weight ?? 1,
    };
    return existing >= 0 ? entries.map((e, i) => (i === existing ? entry : e)) : [...entries, entry];
  });
  return token;
}

/**
 * Sets the weight of the token called `name`, keeping the token. A running coordinator
 * reads it within {@link TOKEN_RELOAD_INTERVAL_MS}; it applies from the client's next
 * submit (docs/operations.md, "Scheduling").
 * @throws TokenFileError for a bad weight or when there is no such token.
 */
export async function setTokenWeight(dataDir: string, name: string, weight: number): Promise<void> {
  checkTokenWeight(weight);
  await updateTokenFile(dataDir, (entries) => {
    if (!entries.some((e) => e.name === name)) throw new TokenFileError(`no token named ${quote(name, 80)}`);
    return entries.map((e) => (e.name === name ? { ...e, weight } : e));
  });
}

/**
 * Removes the token called `name`; a running coordinator refuses it within
 * {@link TOKEN_RELOAD_INTERVAL_MS}.
 * @throws TokenFileError when there is no such token.
 */
export async function revokeToken(dataDir: string, name: string): Promise<void> {
  await updateTokenFile(dataDir, (entries) => {
    if (!entries.some((e) => e.name === name)) throw new TokenFileError(`no token named ${quote(name, 80)}`);
    return entries.filter((e) => e.name !== name);
  });
}

/**
 * Read-modify-write of the token file under a lock file, written atomically (temp
 * file, fsync, rename) with mode 0600, so a reader never sees half a file and two
 * `tokens` commands at once do not lose each other's change.
 */
async function updateTokenFile(dataDir: string, change: (entries: TokenEntry[]) => TokenEntry[]): Promise<void> {
  // Owner-only, like the coordinator creates it (BlobStore): this command usually runs
  // first, and the dir's mode is what keeps other users from the blobs (SECURITY.md).
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const path = tokenFilePath(dataDir);
  const release = await lock(`${path}.lock`);
  try {
    const next = change(readTokenFile(dataDir));
    const tmp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
    // A full disk is reported as such (naming the data dir), and the half-written temp file goes.
    await withDataDirAsync(
      resolve(dataDir),
      `writing ${TOKEN_FILE}`,
      async () => {
        const handle = await open(tmp, "wx", 0o600);
        try {
          await handle.writeFile(`${JSON.stringify({ version: 1, tokens: next }, null, 2)}\n`, "utf8");
          await handle.sync();
        } finally {
          await handle.close();
        }
        await chmod(tmp, 0o600);
        await rename(tmp, path);
      },
      () => rm(tmp, { force: true }),
    );
  } finally {
    release();
  }
}

/** Takes an exclusive lock file, waiting up to 5 s; a lock older than 30 s is stale (its holder died). */
async function lock(path: string): Promise<() => void> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    try {
      const fd = openSync(path, "wx", 0o600);
      try {
        writeFileSync(fd, String(process.pid));
      } catch (e) {
        // An empty lock file (disk full) would block every tokens command for 30 s.
        closeSync(fd);
        unlinkSync(path);
        throw dataDirError(e, resolve(dirname(path)), `writing ${basename(path)}`) ?? e;
      }
      closeSync(fd);
      return () => {
        try {
          unlinkSync(path);
        } catch {
          // already gone: nothing to release
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      try {
        if (Date.now() - statSync(path).mtimeMs > 30_000) unlinkSync(path);
      } catch {
        // removed meanwhile: try again
      }
      if (Date.now() > deadline) throw new TokenFileError(`${path} is locked by another tokens command`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** What {@link TokenStore.verify} found for a presented token. */
export type TokenCheck = { ok: true; name: string; role: TokenRole; weight: number } | { ok: false; reason: string };

/**
 * The token file as a running coordinator sees it. It looks at the file at most every
 * {@link TOKEN_RELOAD_INTERVAL_MS} (size, mtime and inode) and reloads it when it
 * changed. A file that cannot be parsed fails closed: no token is accepted until it is
 * fixed, and `onError` is told once per change.
 */
export class TokenStore {
  readonly #dataDir: string;
  readonly #onError: (message: string) => void;
  readonly #nowMs: () => number;
  #entries: { entry: TokenEntry; hash: Buffer }[] = [];
  #stamp = "";
  #checkedAtMs = Number.NEGATIVE_INFINITY;

  constructor(dataDir: string, opts: { onError?: (message: string) => void; nowMs?: () => number } = {}) {
    this.#dataDir = dataDir;
    this.#onError = opts.onError ?? (() => {});
    this.#nowMs = opts.nowMs ?? Date.now;
    this.#refresh(true);
  }

  /** Number of tokens currently accepted. */
  get size(): number {
    this.#refresh(false);
    return this.#entries.length;
  }

  /**
   * Checks a presented token. Every stored hash is compared in constant time, so the
   * time taken says nothing about which entry (if any) is close.
   */
  verify(token: string): TokenCheck {
    this.#refresh(false);
    if (token.length === 0 || token.length > MAX_TOKEN_CHARS) return { ok: false, reason: "malformed bearer token" };
    const presented = createHash("sha256").update(token, "utf8").digest();
    let found: TokenEntry | undefined;
    for (const { entry, hash } of this.#entries) {
      if (timingSafeEqual(presented, hash) && found === undefined) found = entry;
    }
    if (!found)
      return {
        ok: false,
        reason:
          "token not recognised (wrong, revoked or rotated, or added with `coordinator tokens` to another data dir than this coordinator's)",
      };
    return { ok: true, name: found.name, role: found.role, weight: found.weight };
  }

  #refresh(force: boolean): void {
    const now = this.#nowMs();
    if (!force && now - this.#checkedAtMs < TOKEN_RELOAD_INTERVAL_MS) return;
    this.#checkedAtMs = now;
    let stamp: string;
    try {
      const st = statSync(tokenFilePath(this.#dataDir));
      stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      stamp = "missing";
    }
    if (stamp === this.#stamp) return;
    this.#stamp = stamp;
    try {
      this.#entries = readTokenFile(this.#dataDir).map((entry) => ({ entry, hash: Buffer.from(entry.sha256, "hex") }));
    } catch (e) {
      this.#entries = [];
      this.#onError(`cannot use ${TOKEN_FILE}; refusing every token until it is fixed: ${(e as Error).message}`);
    }
  }
}
