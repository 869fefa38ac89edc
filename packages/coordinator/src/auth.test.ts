import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import type { Role } from "./access.js";
import { authorize, createAuthenticator, DEVELOPMENT_PRINCIPAL, type NodeRequest, type Principal } from "./auth.js";
import { addToken, TokenStore } from "./tokens.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const dir = mkdtempSync(join(tmpdir(), "dce-auth-"));
  dirs.push(dir);
  return dir;
}

const principal = (roles: Role[], extra: Partial<Principal> = {}): Principal => ({ roles: new Set(roles), ...extra });

describe("authorize", () => {
  it("lets a role through only where the table lists it", () => {
    const client = principal(["client"], { clientId: "alice" });
    const worker = principal(["worker"], { workerIdentity: "w1" });
    expect(authorize("dce.v1.JobService/SubmitJob", client)).toEqual({ ok: true });
    expect(authorize("dce.v1.WorkerService/Heartbeat", worker)).toEqual({ ok: true });
    expect(authorize("dce.v1.BlobService/ReadBlob", worker)).toEqual({ ok: true });
    expect(authorize("grpc.health.v1.Health/Check", undefined)).toEqual({ ok: true });
    expect(authorize("GET /metrics", principal(["admin"], { clientId: "root" }))).toEqual({ ok: true });
  });

  it("answers UNAUTHENTICATED when the caller has no credential this method takes", () => {
    const certOnly = principal(["worker"], { workerIdentity: "w1", tokenProblem: "none was sent" });
    const r = authorize("dce.v1.JobService/GetJob", certOnly);
    expect(r).toMatchObject({ ok: false, code: Code.Unauthenticated });
    expect(!r.ok && r.message).toContain("bearer token (authorization: Bearer <token>): none was sent");
    const tokenOnly = principal(["client"], { clientId: "alice", certProblem: "no client certificate was presented" });
    const w = authorize("dce.v1.WorkerService/RegisterWorker", tokenOnly);
    expect(w).toMatchObject({ ok: false, code: Code.Unauthenticated });
    expect(!w.ok && w.message).toContain("OU=worker: no client certificate was presented");
    expect(authorize("dce.v1.JobService/GetJob", undefined)).toMatchObject({ code: Code.Unauthenticated });
  });

  it("answers PERMISSION_DENIED when a valid credential's role is not listed", () => {
    const r = authorize("GET /metrics", principal(["client"], { clientId: "alice" }));
    expect(r).toEqual({
      ok: false,
      code: Code.PermissionDenied,
      message: "token alice may not call it: GET /metrics needs role admin",
    });
  });

  it("refuses a method missing from the table, even in development mode", () => {
    expect(authorize("dce.v1.JobService/Unlisted", DEVELOPMENT_PRINCIPAL)).toMatchObject({ code: Code.PermissionDenied });
  });
});

/** A request as Node hands it over, with a TLS peer. */
function request(o: { authorization?: string; cert?: Record<string, unknown>; authorized?: boolean; error?: string }) {
  return {
    headers: o.authorization === undefined ? {} : { authorization: o.authorization },
    socket: {
      getPeerCertificate: () => o.cert ?? {},
      authorized: o.authorized ?? false,
      authorizationError: o.error ?? null,
    },
  } as unknown as NodeRequest;
}

describe("createAuthenticator", () => {
  it("turns a verified OU=worker certificate into the worker role, named by its CN", () => {
    const auth = createAuthenticator({ enabled: true, tokens: new TokenStore(tmp()) });
    const p = auth.principalOf(request({ cert: { subject: { OU: "worker", CN: "w7" } }, authorized: true }));
    expect([...p.roles]).toEqual(["worker"]);
    expect(p.workerIdentity).toBe("w7");
    const multi = auth.principalOf(request({ cert: { subject: { OU: ["ops", "worker"], CN: "w8" } }, authorized: true }));
    expect(multi.workerIdentity).toBe("w8");
  });

  it("reads a connection's certificate once when it cannot change (HTTP/2 or TLS 1.3), on every request otherwise", () => {
    const auth = createAuthenticator({ enabled: true, tokens: new TokenStore(tmp()) });
    const connection = (alpnProtocol: string | false, protocol: string) => {
      let reads = 0;
      const socket = {
        getPeerCertificate: () => {
          reads++;
          return { subject: { OU: "worker", CN: "w9" } };
        },
        getProtocol: () => protocol,
        alpnProtocol,
        authorized: true,
        authorizationError: null,
      };
      return { req: { headers: {}, socket } as unknown as NodeRequest, reads: () => reads };
    };
    for (const [alpn, protocol, expected] of [
      ["h2", "TLSv1.2", 1],
      [false, "TLSv1.3", 1],
      ["http/1.1", "TLSv1.2", 3],
    ] as const) {
      const c = connection(alpn, protocol);
      for (let i = 0; i < 3; i++) expect(auth.principalOf(c.req).workerIdentity).toBe("w9");
      expect(c.reads()).toBe(expected);
    }
  });

  it("names why a certificate gives no role", () => {
    const auth = createAuthenticator({ enabled: true, tokens: new TokenStore(tmp()) });
    const problem = (r: NodeRequest) => auth.principalOf(r).certProblem;
    expect(problem(request({}))).toBe("no client certificate was presented");
    expect(problem(request({ cert: { subject: { OU: "worker", CN: "w" } }, error: "CERT_HAS_EXPIRED" }))).toContain(
      "CERT_HAS_EXPIRED",
    );
    expect(problem(request({ cert: { subject: { OU: "client", CN: "c" } }, authorized: true }))).toContain("OU=worker");
    expect(problem(request({ cert: { subject: { OU: "worker" } }, authorized: true }))).toContain("CN");
    const plain = { headers: {}, socket: {} } as unknown as NodeRequest;
    expect(auth.principalOf(plain).certProblem).toBe("the connection is not TLS");
  });

  it("turns a listed bearer token into its role and name", async () => {
    const dir = tmp();
    const admin = await addToken(dir, "root", "admin", { weight: 3 });
    const auth = createAuthenticator({ enabled: true, tokens: new TokenStore(dir) });
    const p = auth.principalOf(request({ authorization: `Bearer ${admin}` }));
    expect([...p.roles]).toEqual(["admin"]);
    expect(p.clientId).toBe("root");
    expect(p.clientWeight).toBe(3);
    expect(auth.principalOf(request({ authorization: `bearer   ${admin}` })).clientId).toBe("root");
    expect(auth.principalOf(request({ authorization: `Bearer ${admin}x` })).tokenProblem).toContain("not recognised");
    expect(auth.principalOf(request({ authorization: admin })).tokenProblem).toContain("not 'Bearer <token>'");
    expect(auth.principalOf(request({})).tokenProblem).toBe("none was sent");
  });

  it("gives every caller every role in development mode, and needs a token store otherwise", () => {
    const dev = createAuthenticator({ enabled: false });
    expect(dev.principalOf(request({}))).toBe(DEVELOPMENT_PRINCIPAL);
    expect(() => createAuthenticator({ enabled: true })).toThrow("token store");
  });

  it("answers plain-HTTP requests with 401 or 403", async () => {
    const dir = tmp();
    const client = await addToken(dir, "alice", "client");
    const auth = createAuthenticator({ enabled: true, tokens: new TokenStore(dir) });
    expect(await auth.opsGuard("healthz", request({}))).toBe(true);
    expect(await auth.opsGuard("ui", request({}))).toBe(true);
    expect(await auth.opsGuard("metrics", request({}))).toMatchObject({ status: 401 });
    expect(await auth.opsGuard("ui-data", request({ authorization: `Bearer ${client}` }))).toMatchObject({ status: 403 });
  });
});
