import { Code, type HandlerContext } from "@connectrpc/connect";
import { quote } from "@dce/core";
import { ErrorReason } from "@dce/proto";
import type { Logger } from "pino";
import { DEVELOPMENT_PRINCIPAL, principalKey } from "../auth.js";
import { dceError } from "../errors.js";

/** The worker identity of a caller without a principal (routes served without the server's adapter). */
const ANONYMOUS_WORKER = "anonymous";

/**
 * The certificate identity that registered each worker id. Every later call naming that
 * id must come from the same identity, so no worker can renew, complete or fail
 * another's leases (PERMISSION_DENIED). Pruned with the core's worker table.
 */
export class WorkerIdentities {
  readonly #log: Logger;
  readonly #owners = new Map<string, string>();

  constructor(log: Logger) {
    this.#log = log;
  }

  /** The certificate identity of a worker call. */
  identityOf(ctx: HandlerContext): string {
    return ctx.values.get(principalKey)?.workerIdentity ?? ANONYMOUS_WORKER;
  }

  /** Records the caller as the owner of a newly registered worker id; returns its identity. */
  register(ctx: HandlerContext, workerId: string): string {
    const identity = this.identityOf(ctx);
    this.#owners.set(workerId, identity);
    return identity;
  }

  /** Refuses a call naming a worker id that another identity registered. */
  checkOwner(ctx: HandlerContext, workerId: string): void {
    const owner = this.#owners.get(workerId);
    const caller = this.identityOf(ctx);
    if (owner !== undefined && owner !== caller) {
      this.#log.warn({ workerId, owner, caller }, "worker call refused: the worker id belongs to another identity");
      throw dceError(
        Code.PermissionDenied,
        ErrorReason.WRONG_IDENTITY,
        `worker ${quote(workerId, 64)} was registered by another identity; register your own worker`,
        { worker_id: workerId },
      );
    }
  }

  /**
   * The identity rejected results count against (besides the worker itself; see the core's
   * `quarantine.ts`): the CN of the worker's verified certificate, or, in development mode
   * (no certificates), the name it registers with — so one bad worker does not shut out
   * every anonymous one.
   */
  quarantineIdentityOf(ctx: HandlerContext, name: string): string {
    const p = ctx.values.get(principalKey);
    return p !== undefined && p !== DEVELOPMENT_PRINCIPAL && p.workerIdentity !== undefined ? p.workerIdentity : name;
  }

  /** Forgets worker ids the core no longer knows. */
  prune(isKnown: (workerId: string) => boolean): void {
    for (const id of this.#owners.keys()) if (!isKnown(id)) this.#owners.delete(id);
  }
}
