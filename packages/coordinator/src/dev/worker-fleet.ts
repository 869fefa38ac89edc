/**
 * The worker processes of a development cluster: started, restarted when one dies
 * unexpectedly (a bounded number of times), and stopped by PID.
 *
 * @module
 */
import type { ChildProcess } from "node:child_process";
import type { Logger } from "pino";

/** Most restarts of one worker within {@link RESTART_WINDOW_MS}; one more death stops the cluster. */
export const MAX_RESTARTS_PER_WINDOW = 5;

/** The window {@link MAX_RESTARTS_PER_WINDOW} counts over: a minute. */
export const RESTART_WINDOW_MS = 60_000;

/** After the drain time, how long a SIGKILLed worker is waited for, in ms. */
const KILL_WAIT_MS = 5_000;

/**
 * Whether a worker that died at `nowMs` may be restarted, given the times of its
 * earlier restarts: fewer than {@link MAX_RESTARTS_PER_WINDOW} in the last minute.
 */
export function restartAllowed(restartsMs: readonly number[], nowMs: number): boolean {
  return restartsMs.filter((t) => nowMs - t < RESTART_WINDOW_MS).length < MAX_RESTARTS_PER_WINDOW;
}

/** What a {@link WorkerFleet} needs from its surroundings. */
export interface WorkerFleetPorts {
  /** Starts the process of worker `name` (the `worker` bin with its flags). */
  spawn(name: string): ChildProcess;
  readonly logger: Logger;
  /** Current time in ms; `Date.now` by default. */
  nowMs?(): number;
}

interface Member {
  readonly name: string;
  child: ChildProcess;
  exited: Promise<void>;
  readonly restartsMs: number[];
}

/**
 * Worker processes by name. A worker that exits while the fleet is not stopping is
 * logged and restarted, at most {@link MAX_RESTARTS_PER_WINDOW} times a minute; past
 * that, {@link WorkerFleet.failed} settles and the fleet restarts nothing more.
 */
export class WorkerFleet {
  readonly #ports: WorkerFleetPorts;
  readonly #members: Member[] = [];
  #stopping = false;
  #fail!: (reason: string) => void;
  /** Resolves with a reason once a worker died more often than it may be restarted. */
  readonly failed: Promise<string>;

  constructor(ports: WorkerFleetPorts) {
    this.#ports = ports;
    this.failed = new Promise((resolve) => {
      this.#fail = resolve;
    });
  }

  /** Starts worker `name`. */
  add(name: string): void {
    const member: Member = { name, restartsMs: [], child: undefined as never, exited: Promise.resolve() };
    this.#members.push(member);
    this.#launch(member);
  }

  /** PIDs of the worker processes running now. */
  pids(): number[] {
    return this.#members.flatMap((m) =>
      m.child.exitCode === null && m.child.signalCode === null && m.child.pid ? [m.child.pid] : [],
    );
  }

  /**
   * Stops every worker: SIGTERM to each PID, which drains; a worker still running
   * `graceMs` later gets SIGKILL. Restarts nothing from then on. Resolves when all exited.
   */
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    await Promise.all(
      this.#members.map(async (m) => {
        if (!running(m.child)) return;
        m.child.kill("SIGTERM");
        if (await exitsWithin(m, graceMs)) return;
        this.#ports.logger.warn({ worker: m.name, workerPid: m.child.pid, graceMs }, "worker did not drain in time; killing it");
        m.child.kill("SIGKILL");
        await exitsWithin(m, KILL_WAIT_MS);
      }),
    );
  }

  /** SIGKILLs every worker at once (a second signal: no drain). Restarts nothing from then on. */
  kill(): void {
    this.#stopping = true;
    for (const m of this.#members) if (running(m.child)) m.child.kill("SIGKILL");
  }

  #launch(member: Member): void {
    const child = this.#ports.spawn(member.name);
    member.child = child;
    member.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        resolve();
        this.#onExit(member, child, code, signal);
      });
      // A spawn failure (ENOENT, EACCES) emits "error" and "exit" only sometimes; treat it as a death.
      child.once("error", (e) => {
        this.#ports.logger.error({ worker: member.name, err: e }, "cannot start the worker process");
        if (child.exitCode === null && child.signalCode === null && child.pid === undefined) {
          resolve();
          this.#onExit(member, child, null, null);
        }
      });
    });
    this.#ports.logger.info({ worker: member.name, workerPid: child.pid }, "worker process started");
  }

  #onExit(member: Member, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#stopping || member.child !== child) return;
    const nowMs = this.#ports.nowMs?.() ?? Date.now();
    if (!restartAllowed(member.restartsMs, nowMs)) {
      const reason = `worker ${member.name} died ${MAX_RESTARTS_PER_WINDOW + 1} times within a minute`;
      this.#ports.logger.fatal(
        { worker: member.name, workerPid: child.pid, code, signal },
        `${reason}; stopping the dev cluster`,
      );
      this.#stopping = true;
      this.#fail(reason);
      return;
    }
    member.restartsMs.push(nowMs);
    this.#ports.logger.error(
      { worker: member.name, workerPid: child.pid, code, signal },
      "worker exited unexpectedly; restarting it",
    );
    this.#launch(member);
  }
}

function running(child: ChildProcess): boolean {
  return child.pid !== undefined && child.exitCode === null && child.signalCode === null;
}

/** True when the member's current process exits within `ms`. */
async function exitsWithin(m: Member, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([m.exited.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
