/** Identifies a job. Branded so a worker id can never be passed where a job id is expected. */
export type JobId = string & { readonly __brand: "JobId" };
/** Identifies a registered worker (one process). */
export type WorkerId = string & { readonly __brand: "WorkerId" };
/** Identifies the client (tenant) that owns a job; idempotency keys are scoped to it. */
export type ClientId = string & { readonly __brand: "ClientId" };

/** Brands a string as a {@link JobId}; the shell calls this on ids it generated or received. */
export const asJobId = (s: string): JobId => s as JobId;
/** Brands a string as a {@link WorkerId}. */
export const asWorkerId = (s: string): WorkerId => s as WorkerId;
/** Brands a string as a {@link ClientId}. */
export const asClientId = (s: string): ClientId => s as ClientId;
