/**
 * The coordinator's test kit, for tests and the simulation (`@dce/coordinator/testing`):
 * a manual clock and storage held in memory, so the real `Coordinator` runs without
 * disk or wall time. Not part of the main entry point.
 *
 * @example
 * <!-- docs-test: prelude
 * import { pino } from "pino";
 * const logger = pino({ level: "silent" });
 * -->
 * ```ts
 * import { createRouterTransport } from "@connectrpc/connect";
 * import { createClient } from "@dce/client-sdk";
 * import { Coordinator, resolveConfig } from "@dce/coordinator";
 * import { createMemoryStorage, VirtualClock } from "@dce/coordinator/testing";
 *
 * const clock = new VirtualClock();
 * const config = resolveConfig({ dataDir: "memory", verify: false });
 * const c = await Coordinator.open(config, logger, { storage: createMemoryStorage(), clock });
 * const transport = createRouterTransport((r) => c.routes(r));
 * const client = createClient({ baseUrl: "http://in-memory", transport });
 * for await (const job of client.listJobs()) console.log(job.jobId); // none yet
 * await c.close();
 * ```
 *
 * Tests of the coordinator's clients (worker, SDK) use `startInMemoryCoordinator()`:
 * the same, with every call recorded and faults injected by a Connect interceptor.
 *
 * @packageDocumentation
 */

export type { RecordedCall } from "./harness/call-log.js";
export { CallLog } from "./harness/call-log.js";
export type { MethodName, ResultAnswer } from "./harness/fault-injector.js";
export { FaultInjector } from "./harness/fault-injector.js";
export type { InMemoryCoordinator, InMemoryCoordinatorOptions } from "./harness/in-memory-coordinator.js";
export { startInMemoryCoordinator, WORKER_IDENTITY_HEADER } from "./harness/in-memory-coordinator.js";
export type { MemoryBlobStoreOptions } from "./memory/memory-blob-store.js";
export { MemoryBlobStore } from "./memory/memory-blob-store.js";
export { MemoryJournal } from "./memory/memory-journal.js";
export type { MemoryResultSinkOptions } from "./memory/memory-result-sink.js";
export { MemoryResultSink } from "./memory/memory-result-sink.js";
export type { MemoryStorage } from "./memory/memory-storage.js";
export { createMemoryStorage } from "./memory/memory-storage.js";
export type { Clock } from "./ports/clock.js";
export { every, systemClock } from "./ports/clock.js";
export type { CoordinatorPorts, FatalHandler } from "./ports/coordinator-ports.js";
export type { BlobStorePort, JournalPort, OpenedJournal, ResultSinkPort, StoragePorts } from "./ports/storage.js";
export { VirtualClock } from "./ports/virtual-clock.js";
