import { describe, expect, it } from "vitest";
import { CallWindow } from "./call-window.js";

const tick = () => new Promise((r) => setTimeout(r, 1));

describe("CallWindow", () => {
  it("runs at most its size of calls at once, the waiting ones in the order they asked", async () => {
    const window = new CallWindow(2);
    const started: number[] = [];
    const finish: (() => void)[] = [];
    const calls = [0, 1, 2, 3, 4].map((i) =>
      window.run(async () => {
        started.push(i);
        await new Promise<void>((r) => finish.push(r));
        return i;
      }),
    );
    await tick();
    expect(started).toEqual([0, 1]);
    expect(window.inFlight).toBe(2);
    finish[1]?.();
    await tick();
    expect(started).toEqual([0, 1, 2]);
    finish[0]?.();
    finish[2]?.();
    await tick();
    expect(started).toEqual([0, 1, 2, 3, 4]);
    finish[3]?.();
    finish[4]?.();
    expect(await Promise.all(calls)).toEqual([0, 1, 2, 3, 4]);
    expect(window.inFlight).toBe(0);
  });

  it("frees the place of a call that fails", async () => {
    const window = new CallWindow(1);
    await expect(window.run(() => Promise.reject(new Error("no")))).rejects.toThrow("no");
    expect(await window.run(async () => "next")).toBe("next");
    expect(() => new CallWindow(0)).toThrow(RangeError);
  });
});
