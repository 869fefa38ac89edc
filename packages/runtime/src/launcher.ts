/**
 * A dce process started through `npx` (or `npm exec`) runs as node ← `sh -c` ← npm. A
 * supervisor, container runtime or script that sends SIGTERM to the process it started
 * reaches npm, which passes it to `sh`; `sh` dies without passing it on, and node lives on
 * re-parented, still serving or computing, never draining (`@dce/runtime/launcher`,
 * Node.js only).
 *
 * {@link watchLauncher} closes that gap: when the process was started by `npm exec`,
 * it checks its parent process id and calls `onGone` once the parent is gone (the id
 * changed: the process was re-parented). Each bin treats that as its first SIGTERM:
 * it drains and exits 0. Started any other way (a shell, systemd, a container's entry
 * point, `nohup`), nothing is watched, so a process meant to outlive its shell does.
 *
 * @packageDocumentation
 */

/** What {@link watchLauncher} reads of the process; `cli.ts` passes `process`'s. */
export interface LauncherProcess {
  /** The process's environment (npm marks what it starts with `npm_command`). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The current parent process id, read at every check (`process.ppid` is a getter). */
  readonly ppid: number;
}

/** How often the parent is checked, in ms. */
export const LAUNCHER_POLL_MS = 250;

/** True when npm started this process for `npx` / `npm exec`. */
export function startedByNpmExec(env: LauncherProcess["env"]): boolean {
  return env.npm_command === "exec" || env.npm_lifecycle_event === "npx";
}

/**
 * Calls `onGone` once, when the launcher that started this process through `npm exec`
 * has exited. Does nothing for a process started any other way.
 * @returns a function that stops watching.
 */
export function watchLauncher(proc: LauncherProcess, onGone: () => void, pollMs = LAUNCHER_POLL_MS): () => void {
  if (!startedByNpmExec(proc.env)) return () => {};
  const parent = proc.ppid;
  const timer = setInterval(() => {
    if (proc.ppid === parent) return;
    clearInterval(timer);
    onGone();
  }, pollMs);
  // The watch alone never keeps a process alive.
  timer.unref();
  return () => clearInterval(timer);
}
