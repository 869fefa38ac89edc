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
 * it drains and exits 0. A dce process that starts another one and wants it to end with
 * it (`coordinator dev` its workers, the SDK's `startLocalCluster` its cluster) says so
 * with `DCE_EXIT_WITH_PARENT=1`. Started any other way (a shell, systemd, a container's
 * entry point, `nohup`), nothing is watched, so a process meant to outlive its shell does.
 *
 * @packageDocumentation
 */

/** What {@link watchLauncher} reads of the process; `cli.ts` passes `process`'s. */
export interface LauncherProcess {
  /** The process's environment (npm marks what it starts with `npm_command`; dce with `DCE_EXIT_WITH_PARENT`). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The current parent process id, read at every check (`process.ppid` is a getter). */
  readonly ppid: number;
}

/** How often the parent is checked, in ms. */
export const LAUNCHER_POLL_MS = 250;

/** The variable a dce process sets for a child that must end when it does. */
export const EXIT_WITH_PARENT_ENV = "DCE_EXIT_WITH_PARENT";

/** True when npm started this process for `npx` / `npm exec`. */
export function startedByNpmExec(env: LauncherProcess["env"]): boolean {
  return env.npm_command === "exec" || env.npm_lifecycle_event === "npx";
}

/** True when this process ends with its parent: started by `npm exec`, or asked to by its dce parent. */
export function watchesParent(env: LauncherProcess["env"]): boolean {
  return startedByNpmExec(env) || env[EXIT_WITH_PARENT_ENV] === "1";
}

/**
 * Calls `onGone` once, when the launcher that started this process through `npm exec`
 * (or a dce parent that set `DCE_EXIT_WITH_PARENT=1`) has exited. Does nothing for a
 * process started any other way.
 * @returns a function that stops watching.
 */
export function watchLauncher(proc: LauncherProcess, onGone: () => void, pollMs = LAUNCHER_POLL_MS): () => void {
  if (!watchesParent(proc.env)) return () => {};
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
