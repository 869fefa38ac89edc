/**
 * The dce coordinator: a Connect gRPC server (HTTP/2, TLS by default) wrapping the
 * pure core. Start it with {@link startCoordinator} or the `coordinator` bin.
 *
 * @packageDocumentation
 */

export type { Allowed, Role } from "./access.js";
export { ACCESS, ALL_ROLES, ANYONE } from "./access.js";
export type { CoordinatorCommand } from "./args.js";
export { parseArgs } from "./args.js";
export type { AccessDecision, Principal } from "./auth.js";
export { authorize, principalKey } from "./auth.js";
export type {
  DevCertificateOptions,
  DevCertificatePaths,
  DevWorkerCertificate,
  WorkerCertificateOptions,
} from "./certs.js";
export {
  DEFAULT_DEV_CERT_HOSTS,
  ExistingCaError,
  generateDevCertificates,
  issueWorkerCertificate,
  loadTlsFiles,
} from "./certs.js";
export type { ConnectionLimits } from "./connection-guard.js";
export { DEFAULT_CONNECTION_LIMITS } from "./connection-guard.js";
export type { CoordinatorConfig } from "./coordinator.js";
export { Coordinator, MESSAGE_OVERHEAD_BYTES } from "./coordinator.js";
export { DEFAULT_DEV_WORKER_CERTS } from "./dev-cert-counts.js";
export type {
  Dashboard,
  DashboardJob,
  DashboardLease,
  DashboardOptions,
  DashboardState,
  DashboardTileMap,
  DashboardWorker,
  ThroughputPoint,
} from "./observability/dashboard.js";
export { createDashboard } from "./observability/dashboard.js";
export type { StepObserver, VerificationEvent, VerificationObserver } from "./observability/events.js";
export { registerHealthService } from "./observability/health.js";
export type {
  CoordinatorMetrics,
  CoordinatorMetricsOptions,
  JournalWriteObserver,
  LeaseEndReason,
  RejectionReason,
} from "./observability/metrics.js";
export { createCoordinatorMetrics } from "./observability/metrics.js";
export type { OpsDenial, OpsEndpoint, OpsGuard, OpsHttpOptions, OpsRequest } from "./observability/ops-http.js";
export { createOpsHttpHandler } from "./observability/ops-http.js";
export { registerReflectionService } from "./observability/reflection.js";
export type { ObservableCoordinator } from "./observability/source.js";
export type { Clock } from "./ports/clock.js";
export type { CoordinatorPorts, FatalHandler } from "./ports/coordinator-ports.js";
export type { BlobStorePort, JournalPort, OpenedJournal, ResultSinkPort, StoragePorts } from "./ports/storage.js";
export type { CoordinatorOptions, RunningCoordinator } from "./server.js";
export {
  DEFAULT_MAX_MESSAGE_BYTES,
  isLoopbackHost,
  resolveConfig,
  resolveConnectionLimits,
  startCoordinator,
} from "./server.js";
export type { TokenEntry, TokenRole } from "./tokens.js";
export { addToken, readTokenFile, revokeToken, TOKEN_FILE, TOKEN_ROLES, TokenFileError } from "./tokens.js";
export type { Verdict, VerifiableJob, VerifierOptions } from "./verify/verifier.js";
export { defaultVerifyThreads, Verifier } from "./verify/verifier.js";
export { CODE_OF_ERROR } from "./wire.js";
