import type { JobCursor, JobStateName } from "@dce/core";
import { malformedRequest } from "../errors.js";

// ListJobs page tokens (AIP-158): opaque to clients, they hold the position of the last
// job of the page (its created time and id, see core job-list.ts) and what the listing
// was (whose jobs, which states). A token is only valid for the same listing: another
// caller's token, or one of a listing with other states, is INVALID_ARGUMENT, as is a
// token that does not decode. Tokens do not expire and survive a restart: they name a
// position in the order, not a job that must still exist.

/** What a listing is, as far as its tokens are concerned. */
export interface ListingScope {
  /** Whose jobs: a client's name, or every client's for an admin. */
  readonly owner: string | { readonly all: true };
  /** The state filter (empty for all). */
  readonly states: readonly JobStateName[];
}

interface TokenBody {
  v: 1;
  /** created time of the last job of the page */
  t: number;
  /** its job id */
  j: string;
  /** the scope key ({@link scopeKey}) */
  s: string;
}

/** One string for a scope: the same listing always gives the same key. */
function scopeKey(scope: ListingScope): string {
  const owner = typeof scope.owner === "string" ? `c:${scope.owner}` : "*";
  return `${owner}|${[...new Set(scope.states)].sort().join(",")}`;
}

/** Encodes the position after which the next page starts. */
export function encodePageToken(cursor: JobCursor, scope: ListingScope): string {
  const body: TokenBody = { v: 1, t: cursor.createdAtMs, j: cursor.jobId, s: scopeKey(scope) };
  return Buffer.from(JSON.stringify(body), "utf8").toString("base64url");
}

/**
 * Decodes a page token for a listing of `scope`.
 * @throws ConnectError INVALID_ARGUMENT (`MALFORMED_REQUEST`) for a token that does not
 *   decode, or that another listing (another caller, other states) returned.
 */
export function decodePageToken(token: string, scope: ListingScope): JobCursor {
  const bad = () =>
    malformedRequest("page_token is not a next_page_token of this listing (same caller, same states); start again without one");
  // Strict base64url: decoding must give back exactly the token (Buffer ignores stray characters).
  if (token.length > 4096 || !/^[A-Za-z0-9_-]+$/.test(token)) throw bad();
  const raw = Buffer.from(token, "base64url");
  if (raw.toString("base64url") !== token) throw bad();
  let body: Partial<TokenBody>;
  try {
    body = JSON.parse(raw.toString("utf8")) as Partial<TokenBody>;
  } catch {
    throw bad();
  }
  if (
    typeof body !== "object" ||
    body === null ||
    body.v !== 1 ||
    typeof body.t !== "number" ||
    !Number.isSafeInteger(body.t) ||
    typeof body.j !== "string" ||
    body.s !== scopeKey(scope)
  ) {
    throw bad();
  }
  return { createdAtMs: body.t, jobId: body.j };
}
