/**
 * The coordinator's `--tls-dir`: `server.pem` and `server-key.pem`, and `ca.pem`, the CA
 * that worker certificates must chain to (several CAs during a rotation).
 *
 * Every file is checked when the coordinator starts. Node would ignore a `ca.pem` that is
 * not PEM and then refuse every worker; a key that is not the certificate's would fail
 * every handshake. Either is a message naming `--tls-dir` and the file instead.
 *
 * @packageDocumentation
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { keyPairProblem, pemProblem } from "@dce/runtime/tls";

/** The TLS options the coordinator's server takes: its certificate and key, and the CA of clients. */
export interface ServerTlsFiles {
  cert: Buffer;
  key: Buffer;
  /** Present when client certificates are checked (authentication on). */
  ca?: Buffer;
}

/**
 * Reads and checks `tlsDir`: `server.pem`, `server-key.pem` and, when `withClientCa`,
 * `ca.pem`.
 *
 * @throws Error naming `--tls-dir` and the file when one cannot be read, is not PEM, or
 *   the key is not the certificate's.
 */
export function loadServerTls(tlsDir: string, withClientCa: boolean): ServerTlsFiles {
  let tls: ServerTlsFiles;
  try {
    tls = { cert: readFileSync(join(tlsDir, "server.pem")), key: readFileSync(join(tlsDir, "server-key.pem")) };
  } catch (e) {
    throw new Error(`cannot read server.pem / server-key.pem in ${tlsDir}: ${(e as Error).message}`);
  }
  if (withClientCa) {
    try {
      tls.ca = readFileSync(join(tlsDir, "ca.pem"));
    } catch (e) {
      throw new Error(`cannot read ca.pem in ${tlsDir}, the CA worker certificates must be signed by: ${(e as Error).message}`);
    }
  }
  const problems = [
    ["server.pem", pemProblem(tls.cert, "certificate")],
    ["server-key.pem", pemProblem(tls.key, "private key")],
    ["ca.pem", tls.ca === undefined ? undefined : pemProblem(tls.ca, "certificate")],
  ].filter((p): p is [string, string] => p[1] !== undefined);
  if (problems.length === 0) {
    const mismatch = keyPairProblem(tls.cert, tls.key);
    if (mismatch !== undefined) problems.push(["server-key.pem", `${mismatch} in server.pem`]);
  }
  if (problems.length > 0) {
    throw new Error(problems.map(([file, problem]) => `--tls-dir file ${join(tlsDir, file)} ${problem}`).join("; "));
  }
  return tls;
}
