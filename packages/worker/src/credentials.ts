/**
 * The worker's TLS files (`--ca`, `--cert`, `--key`): checked when it starts, and
 * named when the coordinator and the worker do not trust each other.
 *
 * A failure of trust is a misconfiguration, not an outage: the worker gives up at once
 * (the retry rules in `worker.ts` treat it as fatal) and `cli.ts` logs what
 * {@link explainCredentialFailure} says. Covered by "credentials.test.ts" and the
 * integration tests in `test/integration/misconfig.test.ts`.
 *
 * @packageDocumentation
 */
import { X509Certificate } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  explainTlsFailure,
  fetchPeerCertificate,
  keyPairProblem,
  pemProblem,
  readPemCertificates,
  summarizeCertificate,
  tlsFailureIn,
} from "@dce/runtime/tls";

/** A file the worker was given: its path as given, and its bytes. */
export interface GivenFile {
  readonly path: string;
  readonly bytes: Uint8Array;
}

/** The worker's TLS files; each is absent when its flag is not given. */
export interface WorkerTlsFiles {
  readonly ca?: GivenFile | undefined;
  readonly cert?: GivenFile | undefined;
  readonly key?: GivenFile | undefined;
}

const CA_OPTION = "--ca / DCE_CA";
const CERT_OPTION = "--cert / --key (DCE_WORKER_CERT / DCE_WORKER_KEY)";
const URL_OPTION = "--coordinator / DCE_COORDINATOR";
/** Longest wait for the coordinator's certificate when explaining a failure. */
const PEER_PROBE_TIMEOUT_MS = 2_000;

/**
 * Why the files cannot be used, one line per problem naming the flag and the file
 * (e.g. `--ca / DCE_CA file ca.der is DER, not PEM …`); empty when they can. Node would ignore a
 * CA file that is not PEM and trust nothing, so the worker refuses it at start.
 */
export function tlsFileProblems(files: WorkerTlsFiles): string[] {
  const problems: string[] = [];
  const check = (flag: string, file: GivenFile | undefined, expected: "certificate" | "private key") => {
    const problem = file === undefined ? undefined : pemProblem(file.bytes, expected);
    if (problem !== undefined && file !== undefined) problems.push(`${flag} file ${file.path} ${problem}`);
  };
  check("--ca / DCE_CA", files.ca, "certificate");
  check("--cert", files.cert, "certificate");
  check("--key", files.key, "private key");
  if (problems.length === 0 && files.cert !== undefined && files.key !== undefined) {
    const mismatch = keyPairProblem(files.cert.bytes, files.key.bytes);
    if (mismatch !== undefined) problems.push(`--key file ${files.key.path} ${mismatch} in --cert file ${files.cert.path}`);
  }
  return problems;
}

/** A fatal log line: its message and fields. */
export interface FatalLine {
  readonly message: string;
  readonly fields: Record<string, unknown>;
}

/**
 * What to log when the worker stops because of `e`, if `e` is a failure of trust: the
 * coordinator's certificate not trusted (another CA, expired, another host name), or
 * this worker's certificate refused (in the TLS handshake, or as UNAUTHENTICATED).
 * The message says which flags to fix and names the certificates involved. For a
 * certificate the worker does not trust, it fetches the coordinator's (at most 2 s).
 *
 * @returns `undefined` for any other error.
 */
export async function explainCredentialFailure(
  e: unknown,
  ctx: { readonly coordinatorUrl: string; readonly files: WorkerTlsFiles },
): Promise<FatalLine | undefined> {
  const failure = tlsFailureIn(e);
  if (failure !== undefined && failure.kind !== "other") {
    const peer =
      failure.peer ??
      (failure.kind === "client-certificate-refused"
        ? undefined
        : await fetchPeerCertificate(ctx.coordinatorUrl, PEER_PROBE_TIMEOUT_MS));
    const caRead = ctx.files.ca === undefined ? undefined : readPemCertificates(ctx.files.ca.bytes);
    const text = explainTlsFailure(failure, {
      caOption: CA_OPTION,
      urlOption: URL_OPTION,
      certOption: CERT_OPTION,
      ...(ctx.files.ca === undefined
        ? {}
        : {
            caFile: {
              path: ctx.files.ca.path,
              certificates: caRead !== undefined && "certificates" in caRead ? caRead.certificates : [],
            },
          }),
      ...(peer === undefined ? {} : { peer }),
    });
    const seen =
      peer === undefined ? {} : { subject: summarizeCertificate(peer).subject, issuer: summarizeCertificate(peer).issuer };
    return {
      message: `giving up: ${text}`,
      fields: { code: failure.code, err: failure.message, coordinator: ctx.coordinatorUrl, ...seen },
    };
  }
  const refused = connectErrorIn(e);
  if (refused?.code !== Code.Unauthenticated) return undefined;
  const own = ownCertificate(ctx.files.cert);
  const problem =
    own === undefined
      ? "requires a client certificate and this worker presented none"
      : `refused this worker's client certificate (subject "${own.subject}", issuer "${own.issuer}", from --cert ${ctx.files.cert?.path})`;
  return {
    message: `giving up: the coordinator at ${ctx.coordinatorUrl} ${problem}. To fix: give ${CERT_OPTION} a certificate signed by the CA in the coordinator's --tls-dir, with OU=worker (coordinator init-certs --out DIR --worker NAME)`,
    fields: { err: refused.message, coordinator: ctx.coordinatorUrl, code: Code[refused.code], ...(own ?? {}) },
  };
}

/** The ConnectError `e` is or wraps (the pull loop wraps what stopped it). */
function connectErrorIn(e: unknown): ConnectError | undefined {
  if (e instanceof ConnectError) return e;
  return e instanceof Error && e.cause instanceof ConnectError ? e.cause : undefined;
}

function ownCertificate(file: GivenFile | undefined): { subject: string; issuer: string } | undefined {
  if (file === undefined) return undefined;
  try {
    const { subject, issuer } = summarizeCertificate(new X509Certificate(file.bytes));
    return { subject, issuer };
  } catch {
    return undefined;
  }
}
