import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, it, vi } from "vitest";
import { type ClientConfig, retryTransient } from "./context.js";
import { mapTlsError } from "./tls-errors.js";

const config: ClientConfig = {
  timeoutMs: 1_000,
  maxMessageBytes: 4 << 20,
  chunkBytes: 4 << 20,
  longPollWaitMs: 1_000,
  reconnectBudgetMs: 60_000,
  useLocalStore: false,
};
const failure = (code: string): unknown => {
  const cause = Object.assign(new Error(code), { code });
  return mapTlsError(new ConnectError(code, Code.Internal, undefined, undefined, cause));
};

afterEach(() => {
  vi.useRealTimers();
});

describe("retryTransient", () => {
  it("retries a refused connection until it succeeds", async () => {
    vi.useFakeTimers();
    let calls = 0;
    const done = retryTransient(config, undefined, async () => {
      calls++;
      if (calls < 3) throw new ConnectError("connect ECONNREFUSED", Code.Unavailable);
      return "ok";
    });
    await vi.runAllTimersAsync();
    expect(await done).toBe("ok");
    expect(calls).toBe(3);
  });

  it.each(["SELF_SIGNED_CERT_IN_CHAIN", "CERT_HAS_EXPIRED", "ERR_TLS_CERT_ALTNAME_INVALID"])(
    "does not retry a TLS failure of trust (%s): the answer would not change",
    async (code) => {
      let calls = 0;
      const err = failure(code);
      // A short budget: without the rule the call is retried a few times, then fails.
      await expect(
        retryTransient({ ...config, reconnectBudgetMs: 500 }, undefined, async () => {
          calls++;
          throw err;
        }),
      ).rejects.toBe(err);
      expect(calls).toBe(1);
    },
  );
});
