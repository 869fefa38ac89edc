/**
 * Authentication and authorization of every request to the coordinator.
 *
 * Credentials: a **client certificate** presented in the TLS handshake and signed by
 * the coordinator's CA, with `OU=worker` in its subject, makes the caller a `worker`
 * whose identity is the subject's CN; a **bearer token** (`authorization: Bearer …`)
 * listed in the token file makes it a `client` or `admin` named by the token. The TLS
 * layer asks for a certificate but does not insist (clients with only a token must
 * connect too); each request is then checked against the one access table
 * (`access.ts`) by {@link Authenticator.interceptor} for gRPC and
 * {@link Authenticator.opsGuard} for plain HTTP.
 *
 * No credential, or one that does not verify, answers UNAUTHENTICATED (HTTP 401); a
 * valid credential whose role the table does not list answers PERMISSION_DENIED
 * (HTTP 403). Messages say what is missing, never echo a token.
 *
 * @module
 */
import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { TLSSocket } from "node:tls";
import { Code, type ContextValues, createContextKey, createContextValues, type Interceptor } from "@connectrpc/connect";
import { ErrorReason } from "@dce/proto";
import { ALL_ROLES, ANYONE, allowedFor, type Role } from "./access.js";
import { dceError } from "./errors.js";
import type { OpsEndpoint, OpsGuard } from "./observability/ops-http.js";
import type { TokenStore } from "./tokens.js";

/** Who is calling, as far as the presented credentials show. */
export interface Principal {
  /** Roles this request holds. */
  readonly roles: ReadonlySet<Role>;
  /** Name of the verified bearer token: the client identity that owns jobs. */
  readonly clientId?: string;
  /** The verified token's fair-share weight (1..1000); set with `clientId`. */
  readonly clientWeight?: number;
  /** CN of the verified worker certificate: the identity a worker id is bound to. */
  readonly workerIdentity?: string;
  /** Why no client role: no token sent, or why it was refused. */
  readonly tokenProblem?: string;
  /** Why no worker role: no certificate, or why it was refused. */
  readonly certProblem?: string;
}

/**
 * The caller of an RPC, set for every request by {@link Authenticator.contextValues}.
 * Undefined only when the coordinator's routes run without the server's adapter
 * (in-memory tests), where every caller is the anonymous development principal.
 */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "dce caller" });

/** The caller in development mode (authentication off): every role, one anonymous identity. */
export const DEVELOPMENT_PRINCIPAL: Principal = {
  roles: new Set(ALL_ROLES),
  workerIdentity: "anonymous",
};

/** A request as Node's HTTP servers hand it over (HTTP/1.1 or HTTP/2). */
export type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;

/** Outcome of {@link authorize}. */
export type AccessDecision = { ok: true } | { ok: false; code: Code.Unauthenticated | Code.PermissionDenied; message: string };

/** Options of {@link createAuthenticator}. */
export interface AuthOptions {
  /** False in development mode: every caller holds every role. */
  readonly enabled: boolean;
  /** The token file reader; required when `enabled`. */
  readonly tokens?: TokenStore;
}

/** The authentication pieces the server wires in. */
export interface Authenticator {
  readonly enabled: boolean;
  /** Works out who sent a request from its TLS peer certificate and its authorization header. */
  principalOf(req: NodeRequest): Principal;
  /** For `createRpcHandler({ contextValues })`: stores the principal under {@link principalKey}. */
  contextValues(req: NodeRequest): ContextValues;
  /** Checks every RPC against the access table. */
  readonly interceptor: Interceptor;
  /** Checks every plain-HTTP request against the access table. */
  readonly opsGuard: OpsGuard;
}

/** Creates the authenticator of a coordinator. */
export function createAuthenticator(o: AuthOptions): Authenticator {
  if (o.enabled && !o.tokens) throw new Error("authentication needs a token store");
  const principalOf = (req: NodeRequest): Principal => {
    if (!o.enabled) return DEVELOPMENT_PRINCIPAL;
    const roles = new Set<Role>();
    const cert = workerFromSocket(req.socket as TLSSocket | undefined);
    const token = tokenFromHeader(req.headers.authorization, o.tokens as TokenStore);
    if (cert.identity !== undefined) roles.add("worker");
    if (token.role !== undefined) roles.add(token.role);
    return {
      roles,
      ...(cert.identity !== undefined ? { workerIdentity: cert.identity } : { certProblem: cert.problem ?? "" }),
      ...(token.name !== undefined
        ? { clientId: token.name, clientWeight: token.weight ?? 1 }
        : { tokenProblem: token.problem ?? "" }),
    };
  };
  const interceptor: Interceptor = (next) => async (req) => {
    const key = `${req.service.typeName}/${req.method.name}`;
    const decision = authorize(key, req.contextValues.get(principalKey));
    if (!decision.ok) {
      const reason = decision.code === Code.Unauthenticated ? ErrorReason.UNAUTHENTICATED : ErrorReason.PERMISSION_DENIED;
      throw dceError(decision.code, reason, decision.message, { method: key });
    }
    return await next(req);
  };
  const opsGuard: OpsGuard = (endpoint, req) => {
    const decision = authorize(OPS_KEYS[endpoint], principalOf(req));
    return decision.ok ? true : { status: decision.code === Code.Unauthenticated ? 401 : 403, message: decision.message };
  };
  return {
    enabled: o.enabled,
    principalOf,
    contextValues: (req) => createContextValues().set(principalKey, principalOf(req)),
    interceptor,
    opsGuard,
  };
}

/** The access-table key of each plain-HTTP endpoint group. */
const OPS_KEYS: Readonly<Record<OpsEndpoint, string>> = {
  healthz: "GET /healthz",
  metrics: "GET /metrics",
  ui: "GET /ui",
  "ui-data": "GET /ui/api/state",
};

/**
 * Decides one request: `key` is an access-table key, `p` the caller. Pure.
 * An unlisted key is refused; see `access.ts`.
 */
export function authorize(key: string, p: Principal | undefined): AccessDecision {
  const allowed = allowedFor(key);
  if (allowed === undefined) {
    return { ok: false, code: Code.PermissionDenied, message: `${key} is not in the access table` };
  }
  if (allowed === ANYONE) return { ok: true };
  const caller = p ?? { roles: new Set<Role>() };
  if (allowed.some((r) => caller.roles.has(r))) return { ok: true };
  const wantsToken = allowed.includes("client") || allowed.includes("admin");
  const wantsCert = allowed.includes("worker");
  const needs = `${key} needs role ${allowed.join(" or ")}`;
  // A caller that proved who it is, with the kind of credential this method takes, is
  // denied; one that proved nothing usable here is unauthenticated.
  if ((wantsToken && caller.clientId !== undefined) || (wantsCert && caller.workerIdentity !== undefined)) {
    const who = caller.clientId !== undefined ? `token ${caller.clientId}` : `worker ${caller.workerIdentity}`;
    return { ok: false, code: Code.PermissionDenied, message: `${who} may not call it: ${needs}` };
  }
  const missing: string[] = [];
  if (wantsToken) missing.push(`a bearer token (authorization: Bearer <token>): ${caller.tokenProblem ?? "none was sent"}`);
  if (wantsCert) {
    missing.push(
      `a client certificate signed by the coordinator's CA with OU=worker: ${caller.certProblem ?? "none was presented"}`,
    );
  }
  return { ok: false, code: Code.Unauthenticated, message: `${needs}; it takes ${missing.join("; or ")}` };
}

/** What a TLS peer's certificate makes of it. */
type SocketWorker = { identity?: string; problem?: string };

/**
 * The answer of {@link readWorkerFromSocket} for each connection whose peer certificate
 * cannot change: HTTP/2 (which forbids renegotiation; Node turns it off) or TLS 1.3
 * (which has none). `getPeerCertificate` builds the whole certificate as an object on
 * every call: per request it was the coordinator's largest single cost for tiny shards.
 */
const socketWorkers = new WeakMap<TLSSocket, SocketWorker>();

/** The worker identity of a TLS peer, or why there is none: once per connection. */
function workerFromSocket(socket: TLSSocket | undefined): SocketWorker {
  if (!socket || typeof socket.getPeerCertificate !== "function") return { problem: "the connection is not TLS" };
  const known = socketWorkers.get(socket);
  if (known !== undefined) return known;
  const out = readWorkerFromSocket(socket);
  if (socket.alpnProtocol === "h2" || socket.getProtocol?.() === "TLSv1.3") socketWorkers.set(socket, out);
  return out;
}

function readWorkerFromSocket(socket: TLSSocket): SocketWorker {
  const cert = socket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return { problem: "no client certificate was presented" };
  if (!socket.authorized) {
    // Node's codes name the failure: CERT_HAS_EXPIRED, UNABLE_TO_VERIFY_LEAF_SIGNATURE, …
    const why = socket.authorizationError;
    return { problem: `the client certificate was refused (${why instanceof Error ? why.message : String(why)})` };
  }
  const ou = cert.subject?.OU;
  const units = Array.isArray(ou) ? ou : ou === undefined ? [] : [ou];
  if (!units.includes("worker")) return { problem: "the client certificate's subject has no OU=worker" };
  const cn = cert.subject?.CN;
  const identity = Array.isArray(cn) ? cn[0] : cn;
  if (!identity || identity.length > 256) return { problem: "the client certificate's subject has no usable CN" };
  return { identity };
}

/** The client identity of an authorization header, or why there is none. */
function tokenFromHeader(
  header: string | undefined,
  tokens: TokenStore,
): { name?: string; role?: "client" | "admin"; weight?: number; problem?: string } {
  if (header === undefined || header === "") return { problem: "none was sent" };
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  if (!m) return { problem: "the authorization header is not 'Bearer <token>'" };
  const check = tokens.verify(m[1] as string);
  return check.ok ? { name: check.name, role: check.role, weight: check.weight } : { problem: check.reason };
}
