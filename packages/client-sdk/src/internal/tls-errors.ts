/**
 * Maps TLS handshake failures to `Code.Unavailable`.
 *
 * connect-node reports them as `Internal`, but a certificate the client does
 * not trust is a connection failure like a refused port, and gRPC clients
 * report it as UNAVAILABLE. Pinned by "tls-errors.test.ts" and by the
 * integration test "a client that does not trust the server's CA is refused".
 *
 * @packageDocumentation
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

// Node TLS error codes (ERR_TLS_*, ERR_SSL_*) and OpenSSL X509 verify results
// (UNABLE_TO_VERIFY_LEAF_SIGNATURE, SELF_SIGNED_CERT_IN_CHAIN, CERT_HAS_EXPIRED, ...).
const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|EPROTO$)|CERT|SELF_SIGNED|UNABLE_TO_|HOSTNAME_MISMATCH/;

function tlsCodeIn(reason: unknown): string | undefined {
  const seen = new Set<unknown>();
  let current: unknown = reason;
  while (typeof current === "object" && current !== null && !seen.has(current)) {
    seen.add(current);
    const code: unknown = Reflect.get(current, "code");
    if (typeof code === "string" && TLS_CODE.test(code)) return code;
    current = Reflect.get(current, "cause");
  }
  return undefined;
}

/**
 * Returns `Unavailable` in place of an `Internal` error caused by a TLS
 * failure (the original stays as `cause`); returns anything else unchanged.
 */
export function mapTlsError(e: unknown): unknown {
  if (!(e instanceof ConnectError) || e.code !== Code.Internal) return e;
  const tlsCode = tlsCodeIn(e.cause);
  if (tlsCode === undefined) return e;
  return new ConnectError(
    `TLS handshake with the coordinator failed (${tlsCode}): ${e.rawMessage}`,
    Code.Unavailable,
    e.metadata,
    undefined,
    e.cause,
  );
}

/** Transport interceptor applying {@link mapTlsError} to every call. */
export const tlsErrorsAsUnavailable: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (e) {
    throw mapTlsError(e);
  }
};
