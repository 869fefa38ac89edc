import "reflect-metadata";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DevCertificatePaths, type DevCertificateRole, generateDevCertificates, loadTlsFiles } from "./certs.js";

// TLS and mutual-TLS handshakes between real sockets using the certificates that
// generateDevCertificates writes (their files and contents: certs.test.ts).

let root: string;
let paths: DevCertificatePaths;
/** A second, unrelated dev PKI: its CA must not validate anything from `paths`. */
let other: DevCertificatePaths;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dce-certs-tls-test-"));
  paths = await generateDevCertificates({ outDir: join(root, "main") });
  other = await generateDevCertificates({ outDir: join(root, "other") });
});

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

function role(dir: string, r: DevCertificateRole): { ca: string; cert: string; key: string } {
  return loadTlsFiles(dir, r);
}

interface RunningServer {
  port: number;
  /** CNs of peers that completed a handshake (undefined CN when no client certificate). */
  accepted: (string | undefined)[];
  /** Error codes of handshakes the server rejected. */
  rejected: string[];
  close(): Promise<void>;
}

const servers: RunningServer[] = [];

afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function startServer(options: tls.TlsOptions): Promise<RunningServer> {
  const sockets = new Set<tls.TLSSocket>();
  const accepted: (string | undefined)[] = [];
  const rejected: string[] = [];
  const server = tls.createServer(options, (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    const raw = socket.getPeerCertificate().subject?.CN;
    const cn = typeof raw === "string" ? raw : undefined;
    accepted.push(cn);
    // With rejectUnauthorized: false the handshake completes; report why the peer was not trusted.
    const reason = socket.authorized ? undefined : socket.authorizationError;
    socket.end(reason ? `untrusted ${cn} ${String(reason)}` : `hello ${cn ?? "anonymous"}`);
  });
  server.on("tlsClientError", (err: NodeJS.ErrnoException) => {
    rejected.push(err.code ?? err.message);
  });
  await new Promise<void>((res, rej) => {
    server.once("error", rej);
    server.listen(0, "127.0.0.1", () => res());
  });
  let closed: Promise<void> | undefined;
  const running: RunningServer = {
    port: (server.address() as AddressInfo).port,
    accepted,
    rejected,
    close() {
      closed ??= new Promise<void>((res) => {
        for (const s of sockets) s.destroy();
        server.close(() => res());
      });
      return closed;
    },
  };
  servers.push(running);
  return running;
}

interface ConnectResult {
  /** Whether the client considered the server certificate valid. */
  authorized: boolean | undefined;
  /** Data received from the server before the connection closed. */
  data: string;
  /** Error code seen by the client, if any. */
  error: string | undefined;
}

/**
 * Connects, reads until the server closes, and reports what happened. Always settles, always
 * destroys the socket.
 */
function connect(port: number, options: tls.ConnectionOptions): Promise<ConnectResult> {
  return new Promise((resolve) => {
    let authorized: boolean | undefined;
    let data = "";
    let error: string | undefined;
    const socket = tls.connect({ host: "127.0.0.1", port, ...options });
    const timer = setTimeout(() => {
      error ??= "TEST_TIMEOUT";
      socket.destroy();
    }, 10_000);
    socket.setEncoding("utf8");
    socket.on("secureConnect", () => {
      authorized = socket.authorized;
    });
    socket.on("data", (chunk: string) => {
      data += chunk;
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      error ??= err.code ?? err.message;
    });
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ authorized, data, error });
    });
    socket.on("end", () => socket.end());
  });
}

describe("TLS handshake with the generated certificates", () => {
  let server: RunningServer;
  beforeAll(async () => {
    const s = role(paths.dir, "server");
    server = await startServer({ cert: s.cert, key: s.key });
  });

  it("is authorized by a client trusting the dev CA (servername localhost)", async () => {
    const ca = await readFile(paths.caCert, "utf8");
    const result = await connect(server.port, { ca, servername: "localhost" });
    expect(result).toEqual({
      authorized: true,
      data: "hello anonymous",
      error: undefined,
    });
  });

  it("is authorized when connecting by IP address (IP SAN 127.0.0.1)", async () => {
    const ca = await readFile(paths.caCert, "utf8");
    // No servername: Node checks the identity against the host, 127.0.0.1.
    const result = await connect(server.port, { ca });
    expect(result).toEqual({
      authorized: true,
      data: "hello anonymous",
      error: undefined,
    });
  });

  it("fails verification against a different dev CA", async () => {
    const ca = await readFile(other.caCert, "utf8");
    const result = await connect(server.port, { ca, servername: "localhost" });
    expect(result.error).toBe("UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    expect(result.data).toBe("");
  });

  it("fails hostname verification for a name that is not in the SAN", async () => {
    const ca = await readFile(paths.caCert, "utf8");
    const result = await connect(server.port, {
      ca,
      servername: "not-dce.example",
    });
    expect(result.error).toBe("ERR_TLS_CERT_ALTNAME_INVALID");
    expect(result.data).toBe("");
  });

  it("rejects a clientAuth-only certificate presented as a server certificate", async () => {
    const c = role(paths.dir, "client");
    const wrong = await startServer({ cert: c.cert, key: c.key });
    const result = await connect(wrong.port, {
      ca: c.ca,
      servername: "localhost",
    });
    expect(result.error).toBe("INVALID_PURPOSE");
    await wrong.close();
  });

  it("accepts a worker certificate as a server certificate (its panel server for peers), checked by its CN", async () => {
    const w = role(paths.dir, "worker-1");
    const peer = await startServer({ cert: w.cert, key: w.key });
    const result = await connect(peer.port, {
      ca: w.ca,
      // Peers check the identity the coordinator named, not a host name (worker/src/peer/peer-reader.ts).
      checkServerIdentity: (_host, cert) => (cert.subject.CN === "worker-1" ? undefined : new Error("wrong identity")),
    });
    expect(result).toEqual({ authorized: true, data: "hello anonymous", error: undefined });
    await peer.close();
  });
});

describe("mutual TLS with the generated certificates", () => {
  let server: RunningServer;
  beforeAll(async () => {
    const s = role(paths.dir, "server");
    server = await startServer({
      cert: s.cert,
      key: s.key,
      ca: s.ca,
      requestCert: true,
      rejectUnauthorized: true,
    });
  });

  it("accepts the worker certificate", async () => {
    const w = role(paths.dir, "worker-1");
    const result = await connect(server.port, {
      ca: w.ca,
      cert: w.cert,
      key: w.key,
      servername: "localhost",
    });
    expect(result).toEqual({
      authorized: true,
      data: "hello worker-1",
      error: undefined,
    });
    expect(server.accepted).toContain("worker-1");
  });

  it("accepts the client certificate", async () => {
    const c = role(paths.dir, "client");
    const result = await connect(server.port, {
      ca: c.ca,
      cert: c.cert,
      key: c.key,
      servername: "localhost",
    });
    expect(result).toEqual({
      authorized: true,
      data: "hello dce-client",
      error: undefined,
    });
  });

  it("rejects a client that presents no certificate", async () => {
    const rejectedBefore = server.rejected.length;
    const acceptedBefore = server.accepted.length;
    const ca = await readFile(paths.caCert, "utf8");
    const result = await connect(server.port, { ca, servername: "localhost" });
    expect(result.data).toBe("");
    expect(result.error).toMatch(/CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE/);
    expect(server.accepted.length).toBe(acceptedBefore);
    await expect.poll(() => server.rejected.length).toBe(rejectedBefore + 1);
    expect(server.rejected.at(-1)).toMatch(/PEER_DID_NOT_RETURN_A_CERTIFICATE/);
  });

  it("rejects a worker certificate issued by a different dev CA", async () => {
    const acceptedBefore = server.accepted.length;
    const rejectedBefore = server.rejected.length;
    const foreign = role(other.dir, "worker-1");
    const ca = await readFile(paths.caCert, "utf8");
    const result = await connect(server.port, {
      ca,
      cert: foreign.cert,
      key: foreign.key,
      servername: "localhost",
    });
    // Node verifies the client chain after the handshake and just drops the connection.
    expect(result.data).toBe("");
    expect(server.accepted.length).toBe(acceptedBefore);
    await expect.poll(() => server.rejected.length).toBe(rejectedBefore + 1);
  });

  it("rejects the serverAuth-only server certificate used as a client certificate", async () => {
    const acceptedBefore = server.accepted.length;
    const rejectedBefore = server.rejected.length;
    const s = role(paths.dir, "server");
    const result = await connect(server.port, {
      ca: s.ca,
      cert: s.cert,
      key: s.key,
      servername: "localhost",
    });
    expect(result.data).toBe("");
    expect(server.accepted.length).toBe(acceptedBefore);
    await expect.poll(() => server.rejected.length).toBe(rejectedBefore + 1);
  });

  it("reports why those client certificates are untrusted (non-rejecting server)", async () => {
    const s = role(paths.dir, "server");
    const lenient = await startServer({
      cert: s.cert,
      key: s.key,
      ca: s.ca,
      requestCert: true,
      rejectUnauthorized: false,
    });
    const attempt = async (dir: string, r: DevCertificateRole): Promise<string> => {
      const c = role(dir, r);
      const result = await connect(lenient.port, {
        ca: s.ca,
        cert: c.cert,
        key: c.key,
        servername: "localhost",
      });
      expect(result.authorized).toBe(true);
      return result.data;
    };
    expect(await attempt(paths.dir, "worker-1")).toBe("hello worker-1");
    expect(await attempt(other.dir, "worker-1")).toBe("untrusted worker-1 UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    expect(await attempt(paths.dir, "server")).toBe("untrusted dce-coordinator INVALID_PURPOSE");
    await lenient.close();
  });
});
