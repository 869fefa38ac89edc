import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import {
  clientSessionOptions,
  HTTP2_CLIENT_SESSION_MEMORY_MIB,
  HTTP2_STREAM_WINDOW_BYTES,
  WideWindowSessionManager,
} from "./http2.js";

describe("client HTTP/2 session options", () => {
  it("allow more session memory than Node's 10 MiB, so concurrent uploads on a slow link are not reset", () => {
    // Node's default is 10 MiB; 16 MiB of receive window alone would not fit in it.
    expect(clientSessionOptions().maxSessionMemory).toBe(HTTP2_CLIENT_SESSION_MEMORY_MIB);
    expect(HTTP2_CLIENT_SESSION_MEMORY_MIB).toBeGreaterThanOrEqual(64);
  });

  it("keep the caller's options and settings, with the wide stream window on top", () => {
    const o = clientSessionOptions({ ca: "pem", maxSessionMemory: 128, settings: { enablePush: false } });
    expect(o).toMatchObject({ ca: "pem", maxSessionMemory: 128 });
    expect(o.settings).toEqual({ enablePush: false, initialWindowSize: HTTP2_STREAM_WINDOW_BYTES });
  });
});

describe("WideWindowSessionManager", () => {
  it("keeps a session's error after the manager has let it go from killing the process", async () => {
    const server = http2.createServer((_req, res) => res.end("ok"));
    const sessions = new Set<http2.ServerHttp2Session>();
    server.on("session", (s) => sessions.add(s));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const manager = new WideWindowSessionManager(url);
    try {
      const stream = await manager.request("GET", "/", {}, {});
      const session = stream.session;
      if (session === undefined) throw new Error("the stream has a session");
      stream.resume();
      await new Promise((r) => stream.on("close", r));
      // The manager leaves the session (as when a PING goes unanswered), drops its listeners and
      // destroys it with an error: without the manager's extra listener that error is unhandled
      // (vitest then fails the run with "connection aborted").
      manager.abort();
      await new Promise((r) => setTimeout(r, 20));
      expect(session.destroyed).toBe(true);
      expect(() => session.emit("error", new Error("PING timed out"))).not.toThrow();
    } finally {
      for (const s of sessions) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
