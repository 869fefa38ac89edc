/**
 * Maps TLS handshake failures to `Code.Unavailable`, with a message saying what to fix.
 *
 * connect-node reports them as `Internal`, but a certificate the client does not trust
 * is a connection failure like a refused port, and gRPC clients report it as
 * UNAVAILABLE. When the failure is one of trust (another CA, an expired certificate, a
 * host name the certificate does not list), the message names the option to fix
 * (`ca`, dce's `--ca` / `DCE_CA`) and the coordinator's certificate; the classification
 * is the worker's too (`@dce/runtime/tls`). Pinned by "tls-errors.test.ts" and by the
 * integration tests "a client that does not trust the server's CA is refused" and
 * "dce with another CA names --ca".
 *
 * @packageDocumentation
 */
import type { X509Certificate } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { explainTlsFailure, fetchPeerCertificate, readPemCertificates, tlsFailureIn } from "@dce/runtime/tls";

/** How messages name the client's options: the SDK's, then the dce command's. */
const CA_OPTION = "--ca / DCE_CA (SDK: `ca`)";
const URL_OPTION = "--coordinator / DCE_COORDINATOR (SDK: `baseUrl`)";
/** Longest wait for the coordinator's certificate when explaining a failure. */
const PEER_PROBE_TIMEOUT_MS = 2_000;

/** What {@link mapTlsError} can say about the connection besides the error. */
export interface TlsErrorContext {
  /** The CA the client was given (`ClientOptions.ca`); absent for the system CAs. */
  readonly ca?: string | Uint8Array;
  /** The coordinator's certificate, fetched after the failure. */
  readonly peer?: X509Certificate;
}

/**
 * Returns `Unavailable` in place of an `Internal` error caused by a TLS failure (the
 * original stays as `cause`); returns anything else unchanged.
 */
export function mapTlsError(e: unknown, context: TlsErrorContext = {}): unknown {
  if (!(e instanceof ConnectError) || e.code !== Code.Internal) return e;
  const failure = tlsFailureIn(e.cause);
  if (failure === undefined) return e;
  let message = `TLS handshake with the coordinator failed (${failure.code}): ${e.rawMessage}`;
  if (failure.kind !== "other") {
    const read = context.ca === undefined ? undefined : readPemCertificates(context.ca);
    const certificates = read !== undefined && "certificates" in read ? read.certificates : [];
    message += `; ${explainTlsFailure(failure, {
      caOption: CA_OPTION,
      urlOption: URL_OPTION,
      ...(context.ca === undefined ? {} : { caFile: { certificates } }),
      ...(context.peer === undefined ? {} : { peer: context.peer }),
    })}`;
  }
  return new ConnectError(message, Code.Unavailable, e.metadata, undefined, e.cause);
}

/**
 * Transport interceptor applying {@link mapTlsError} to every call. On a failure of
 * trust it first fetches the coordinator's certificate (one handshake that checks
 * nothing and sends nothing, at most 2 s) so that the message can name it.
 */
export function tlsErrorInterceptor(options: { baseUrl: string; ca?: string | Uint8Array | undefined }): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (e) {
      const failure = e instanceof ConnectError && e.code === Code.Internal ? tlsFailureIn(e.cause) : undefined;
      const peer =
        failure !== undefined && failure.kind !== "other" && failure.peer === undefined
          ? await fetchPeerCertificate(options.baseUrl, PEER_PROBE_TIMEOUT_MS)
          : undefined;
      throw mapTlsError(e, {
        ...(options.ca === undefined ? {} : { ca: options.ca }),
        ...(peer === undefined ? {} : { peer }),
      });
    }
  };
}
