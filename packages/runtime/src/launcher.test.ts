import { afterEach, describe, expect, it, vi } from "vitest";
import { startedByNpmExec, watchLauncher } from "./launcher.js";

describe("watchLauncher", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("calls onGone once, after the parent of an npm-exec'd process changes", () => {
    vi.useFakeTimers();
    let ppid = 100;
    const onGone = vi.fn();
    watchLauncher(
      {
        env: { npm_command: "exec" },
        get ppid() {
          return ppid;
        },
      },
      onGone,
      50,
    );
    vi.advanceTimersByTime(500);
    expect(onGone).not.toHaveBeenCalled();
    ppid = 1;
    vi.advanceTimersByTime(50);
    expect(onGone).toHaveBeenCalledTimes(1);
    ppid = 7;
    vi.advanceTimersByTime(500);
    expect(onGone).toHaveBeenCalledTimes(1);
  });

  it("watches nothing for a process not started by npm exec", () => {
    vi.useFakeTimers();
    let ppid = 100;
    const onGone = vi.fn();
    watchLauncher(
      {
        env: { npm_command: "run-script" },
        get ppid() {
          return ppid;
        },
      },
      onGone,
      50,
    );
    ppid = 1;
    vi.advanceTimersByTime(500);
    expect(onGone).not.toHaveBeenCalled();
  });

  it("stops watching when told to", () => {
    vi.useFakeTimers();
    let ppid = 100;
    const onGone = vi.fn();
    const stop = watchLauncher(
      {
        env: { npm_lifecycle_event: "npx" },
        get ppid() {
          return ppid;
        },
      },
      onGone,
      50,
    );
    stop();
    ppid = 1;
    vi.advanceTimersByTime(500);
    expect(onGone).not.toHaveBeenCalled();
  });

  it("watches a child its dce parent started with DCE_EXIT_WITH_PARENT=1", () => {
    vi.useFakeTimers();
    let ppid = 100;
    const onGone = vi.fn();
    watchLauncher(
      {
        env: { DCE_EXIT_WITH_PARENT: "1" },
        get ppid() {
          return ppid;
        },
      },
      onGone,
      50,
    );
    ppid = 1;
    vi.advanceTimersByTime(50);
    expect(onGone).toHaveBeenCalledTimes(1);
  });

  it("recognises npx and npm exec by npm's own variables", () => {
    expect(startedByNpmExec({ npm_command: "exec" })).toBe(true);
    expect(startedByNpmExec({ npm_lifecycle_event: "npx" })).toBe(true);
    expect(startedByNpmExec({})).toBe(false);
  });
});
