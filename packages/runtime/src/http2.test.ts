import { describe, expect, it } from "vitest";
import { clientSessionOptions, HTTP2_CLIENT_SESSION_MEMORY_MIB, HTTP2_STREAM_WINDOW_BYTES } from "./http2.js";

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
