import type { ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { MAX_RESTARTS_PER_WINDOW, RESTART_WINDOW_MS, restartAllowed, WorkerFleet } from "./worker-fleet.js";

/** A child process that only exists as events: `die()` makes it exit. */
function fakeChild(pid: number) {
  const child = Object.assign(new EventEmitter(), {
    pid,
    exitCode: null as number | null,
    signalCode: null as string | null,
    signals: [] as string[],
    kill(signal: string) {
      child.signals.push(signal);
      return true;
    },
    die(code: number) {
      child.exitCode = code;
      child.emit("exit", code, null);
    },
  });
  return child;
}

describe("restartAllowed", () => {
  it("allows five restarts within a minute, not a sixth", () => {
    const times = [0, 1, 2, 3];
    expect(restartAllowed(times, 10)).toBe(true);
    expect(restartAllowed([...times, 4], 10)).toBe(false);
    expect(MAX_RESTARTS_PER_WINDOW).toBe(5);
  });

  it("forgets restarts older than a minute", () => {
    expect(restartAllowed([0, 1, 2, 3, 4], RESTART_WINDOW_MS + 5)).toBe(true);
  });
});

describe("WorkerFleet", () => {
  it("restarts a worker that dies, then gives up past the budget", async () => {
    const children: ReturnType<typeof fakeChild>[] = [];
    let nowMs = 0;
    const fleet = new WorkerFleet({
      logger: pino({ level: "silent" }),
      nowMs: () => nowMs,
      spawn: () => {
        const c = fakeChild(100 + children.length);
        children.push(c);
        return c as unknown as ChildProcess;
      },
    });
    let failed: string | undefined;
    void fleet.failed.then((r) => {
      failed = r;
    });
    fleet.add("dev-1");
    expect(fleet.pids()).toEqual([100]);
    for (let i = 0; i < MAX_RESTARTS_PER_WINDOW; i++) {
      nowMs += 1_000;
      children.at(-1)?.die(1);
    }
    expect(children).toHaveLength(1 + MAX_RESTARTS_PER_WINDOW);
    expect(fleet.pids()).toEqual([100 + MAX_RESTARTS_PER_WINDOW]);
    children.at(-1)?.die(1);
    await Promise.resolve();
    expect(children).toHaveLength(1 + MAX_RESTARTS_PER_WINDOW);
    expect(failed).toMatch(/dev-1 died 6 times within a minute/);
  });

  it("stops each worker with SIGTERM and restarts none of them", async () => {
    const children: ReturnType<typeof fakeChild>[] = [];
    const fleet = new WorkerFleet({
      logger: pino({ level: "silent" }),
      spawn: () => {
        const c = fakeChild(200 + children.length);
        c.kill = (signal: string) => {
          c.signals.push(signal);
          queueMicrotask(() => c.die(0));
          return true;
        };
        children.push(c);
        return c as unknown as ChildProcess;
      },
    });
    fleet.add("dev-1");
    fleet.add("dev-2");
    await fleet.stop(1_000);
    expect(children.map((c) => c.signals)).toEqual([["SIGTERM"], ["SIGTERM"]]);
    expect(children).toHaveLength(2);
    expect(fleet.pids()).toEqual([]);
  });
});
