/**
 * The dce coordinator: a Connect gRPC server (HTTP/2, TLS by default) wrapping the
 * pure core. Start it with {@link startCoordinator} or the `coordinator` bin.
 *
 * @packageDocumentation
 */
export { startCoordinator, resolveConfig, isLoopbackHost, DEFAULT_MAX_MESSAGE_BYTES } from "./server.js";
export type { CoordinatorOptions, RunningCoordinator } from "./server.js";
export { Coordinator, MESSAGE_OVERHEAD_BYTES } from "./coordinator.js";
export type { CoordinatorConfig } from "./coordinator.js";
export { generateDevCertificates, loadTlsFiles, DEFAULT_DEV_CERT_HOSTS } from "./certs.js";
export type { DevCertificatePaths, DevCertificateOptions } from "./certs.js";
export { parseArgs } from "./args.js";
export type { CoordinatorCommand } from "./args.js";
export { CODE_OF_ERROR } from "./wire.js";
