import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorReason, type ShardOutcome, type ShardResult, StagedTileSchema } from "@dce/proto";
import type { BlobTransfer } from "@dce/runtime/blob-transfer";
import { errorReasonOf } from "@dce/runtime/error-info";
import { errorMessage } from "../errors.js";
import { sleepMs } from "../internal/abort.js";
import { backoffDelayMs } from "../internal/backoff.js";
import { float64ToBytes, sha256Hex } from "../internal/bytes.js";
import type { WorkerLogger } from "../log-scope.js";
import { leaseFields, type ShardRun } from "../pull/shard.js";
import type { Session } from "../session/session.js";
import type { ReportBatcher } from "./report-batcher.js";
import type { ShardReporter } from "./shard-reporter.js";
import { TileStager } from "./tile-stager.js";

/** What a {@link CompletionReporter} needs of the worker around it. */
export interface CompletionDeps {
  readonly session: Session;
  readonly batcher: ReportBatcher;
  readonly transfer: BlobTransfer;
  readonly rpcTimeoutMs: number;
  readonly random: () => number;
  readonly log: WorkerLogger;
  /** Whether the worker already stopped on a fatal error. */
  readonly isFatal: () => boolean;
}

/**
 * The worker's own {@link ShardReporter}: stages a tile in the coordinator's local store
 * when it takes staged tiles ({@link TileStager}), else sends it inline, or uploads it as
 * a blob when it is too large for one message; reports it through the {@link ReportBatcher},
 * and logs what the coordinator made of it. Refused or lost results are dropped (their
 * lease runs out and the shard runs again elsewhere).
 */
export class CompletionReporter implements ShardReporter {
  readonly #d: CompletionDeps;
  readonly #stager: TileStager;

  constructor(deps: CompletionDeps) {
    this.#d = deps;
    this.#stager = new TileStager({ session: deps.session, log: deps.log });
  }

  async complete(run: ShardRun, c: Float64Array, _n: number, computeMs: number): Promise<void> {
    const { lease } = run;
    const { log } = this.#d;
    const signal = run.abort.signal;
    // The coordinator treats a repeated CompleteShards as ALREADY_EXISTS, so retrying is
    // safe; it is only pointless once the lease has certainly run out.
    const giveUp = () => Date.now() >= run.expiresAtMs;
    const bytes = float64ToBytes(c);
    const report = async (payload: ShardResult["payload"]): Promise<ShardOutcome | undefined | "dropped"> => {
      try {
        return await this.#d.batcher.report(run, { lease, payload, computeMs: clampUint32(Math.round(computeMs)) });
      } catch (e) {
        if (signal.aborted || this.#d.isFatal()) throw e;
        const fields = { ...leaseFields(lease), err: errorMessage(e) };
        if (giveUp()) log.info(fields, "lease expired while the coordinator was unreachable; result dropped");
        else log.warn(fields, "CompleteShards refused; result dropped");
        return "dropped";
      }
    };
    // Staged in the local store when the coordinator takes it (no encoding, no copy on
    // either side); else inline or as a blob.
    const staged = await this.#stager.stage(lease, bytes);
    let outcome = await report(staged ? stagedPayload(bytes) : await this.#sendablePayload(bytes, signal, giveUp));
    if (staged && outcome !== "dropped" && outcome?.error?.reason === ErrorReason.STAGED_TILE_NOT_FOUND && !giveUp()) {
      // The coordinator found no file (swept, or taken by an earlier try of this report):
      // the tile is still here, so it goes the other way rather than being lost.
      log.debug({ ...leaseFields(lease), reason: outcome.message }, "staged tile not found by the coordinator; sending it");
      outcome = await report(await this.#sendablePayload(bytes, signal, giveUp));
    }
    if (outcome === "dropped") return;
    const fields = {
      ...leaseFields(lease),
      computeMs: Math.round(computeMs),
      // Why a result was refused, as the coordinator names it (docs/errors.md).
      ...(outcome?.error === undefined ? {} : { errorReason: ErrorReason[outcome.error.reason] }),
    };
    if (outcome === undefined) {
      log.warn(fields, "CompleteShards returned no outcome for the result; dropped");
      return;
    }
    switch (outcome.code) {
      case 0: // OK (the Code enum has no member for it)
        log.debug(fields, "shard completed");
        return;
      case Code.AlreadyExists:
        log.debug(fields, "shard completed (accepted earlier)");
        return;
      case Code.Aborted:
        log.info({ ...fields, reason: outcome.message }, "result not accepted (lease no longer current); dropped");
        return;
      case Code.NotFound:
        // The job was deleted (by its client or its retention) while this shard ran: nothing is wrong here.
        log.info({ ...fields, reason: outcome.message }, "result not accepted (the job is gone); dropped");
        return;
      default:
        log.warn(
          { ...fields, code: Code[outcome.code] ?? outcome.code, reason: outcome.message },
          "result rejected by the coordinator; dropped",
        );
    }
  }

  /**
   * A tile as it goes without the local store: inline, or as a blob when it is too large
   * for one message (written into the upload file when the local store is reachable, else
   * by chunks).
   */
  async #sendablePayload(bytes: Uint8Array, signal: AbortSignal, giveUp: () => boolean): Promise<ShardResult["payload"]> {
    if (bytes.byteLength <= this.#d.session.chunkLimitBytes()) return { case: "data", value: bytes };
    return { case: "blobId", value: await this.#uploadTile(bytes, signal, giveUp) };
  }

  /**
   * Uploads a tile too large for one message; returns its blob id. An upload the
   * coordinator no longer holds (reason `UPLOAD_NOT_FOUND`: it dropped it when its disk
   * refused a chunk, it expired, or the coordinator restarted) is begun again while the
   * lease lasts.
   */
  async #uploadTile(bytes: Uint8Array, signal: AbortSignal, giveUp: () => boolean): Promise<string> {
    const { session, transfer } = this.#d;
    const sha256 = await sha256Hex(bytes);
    const upload = {
      sha256,
      callOptions: { signal, timeoutMs: this.#d.rpcTimeoutMs },
      call: <T>(name: string, rpc: () => Promise<T>) => session.retry(name, rpc, { signal, workerScoped: false, giveUp }),
      useLocalStore: session.localStore !== undefined,
    };
    for (let attempt = 1; ; attempt++) {
      try {
        return await transfer.upload(bytes, upload);
      } catch (e) {
        if (errorReasonOf(e) !== ErrorReason.UPLOAD_NOT_FOUND || signal.aborted || giveUp()) throw e;
        const err = ConnectError.from(e);
        this.#d.log.warn({ err: err.rawMessage, attempt }, "tile upload lost by the coordinator; uploading again");
        await sleepMs(backoffDelayMs(attempt, this.#d.random), signal);
      }
    }
  }
}

/** The payload of a tile staged in the local store (`TileStager`). */
function stagedPayload(bytes: Uint8Array): ShardResult["payload"] {
  return { case: "staged", value: create(StagedTileSchema, { sizeBytes: BigInt(bytes.byteLength) }) };
}

function clampUint32(x: number): number {
  return Math.min(Math.max(0, x), 0xffff_ffff);
}
