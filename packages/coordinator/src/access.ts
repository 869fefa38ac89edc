/**
 * Who may call what: the one access table of the coordinator.
 *
 * Every gRPC method and every plain-HTTP endpoint the coordinator serves is listed
 * here with the roles allowed to call it. One interceptor (`auth.ts`) checks every
 * RPC against this table and the ops handler checks every HTTP request against it;
 * nothing else decides access. A method missing from the table is refused
 * (PERMISSION_DENIED): new methods are closed until someone lists them. SECURITY.md
 * shows the same table in prose.
 *
 * Roles come from credentials: `worker` from a client certificate signed by the
 * coordinator's CA with `OU=worker` in its subject, `client` and `admin` from a
 * bearer token (`coordinator tokens add NAME --role client|admin`). `anyone` means
 * no credential is needed.
 *
 * @module
 */

/** A role a caller can hold. */
export type Role = "client" | "worker" | "admin";

/** Every role, for development mode (authentication off), where every caller holds them all. */
export const ALL_ROLES: readonly Role[] = ["client", "worker", "admin"];

/** Marks an endpoint that needs no credential. */
export const ANYONE = "anyone";

/** The roles allowed on one method or endpoint, or {@link ANYONE}. */
export type Allowed = readonly Role[] | typeof ANYONE;

/**
 * The access table. Keys are gRPC paths (`package.Service/Method`) and HTTP routes
 * (`GET /path`; HEAD is treated as GET).
 *
 * - Clients submit, follow, fetch, cancel, delete and list their own jobs; a job of
 *   anybody else answers NOT_FOUND and is not listed (the coordinator scopes jobs by
 *   the token's name).
 * - Admins may do what clients do on every job, and read the metrics and the dashboard data.
 * - Workers pull shards, renew and report their own leases (a worker id is bound to
 *   the certificate that registered it), read the input blobs and upload result tiles.
 * - The health check and server reflection stay open: load balancers and `grpcurl`
 *   need them, and they reveal nothing the public schema does not.
 */
export const ACCESS: Readonly<Record<string, Allowed>> = {
  "dce.v1.JobService/SubmitJob": ["client", "admin"],
  "dce.v1.JobService/GetJob": ["client", "admin"],
  "dce.v1.JobService/GetResult": ["client", "admin"],
  "dce.v1.JobService/CancelJob": ["client", "admin"],
  "dce.v1.JobService/DeleteJob": ["client", "admin"],
  // A client lists its own jobs; an admin lists every client's.
  "dce.v1.JobService/ListJobs": ["client", "admin"],

  // Workers upload result tiles too large for one message, or through the local store.
  // The upload only stores bytes under their SHA-256; a tile counts once CompleteShards
  // names it on the worker's own lease and it passes verification.
  "dce.v1.BlobService/BeginUpload": ["client", "admin", "worker"],
  "dce.v1.BlobService/UploadChunk": ["client", "admin", "worker"],
  "dce.v1.BlobService/FinishUpload": ["client", "admin", "worker"],
  // Clients download results and workers fetch inputs; blob ids are SHA-256 digests of
  // content, so a reader must already know what it asks for.
  "dce.v1.BlobService/ReadBlob": ["client", "admin", "worker"],

  "dce.v1.WorkerService/RegisterWorker": ["worker"],
  "dce.v1.WorkerService/AcquireShards": ["worker"],
  "dce.v1.WorkerService/Heartbeat": ["worker"],
  "dce.v1.WorkerService/CompleteShards": ["worker"],
  "dce.v1.WorkerService/FailShard": ["worker"],

  "grpc.health.v1.Health/Check": ANYONE,
  "grpc.health.v1.Health/Watch": ANYONE,
  "grpc.health.v1.Health/List": ANYONE,
  "grpc.reflection.v1.ServerReflection/ServerReflectionInfo": ANYONE,
  "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": ANYONE,

  "GET /healthz": ANYONE,
  "GET /metrics": ["admin"],
  // The dashboard's static page and script hold no data; the page sends the admin
  // token it reads from the URL fragment (`/ui#token=…`) to its data endpoint.
  "GET /ui": ANYONE,
  "GET /ui/api/state": ["admin"],
};

/** The table entry for a key, or undefined when the key is not listed (refused). */
export function allowedFor(key: string): Allowed | undefined {
  return Object.hasOwn(ACCESS, key) ? ACCESS[key] : undefined;
}
