/**
 * How many worker certificates `coordinator init-certs` writes. Apart from `certs.ts`
 * so the pure argument parser can name them without loading the X.509 library.
 *
 * @module
 */

/**
 * Worker certificates `init-certs` writes by default: two, for the two workers of the
 * README's quick start and of `pnpm demo`. Each worker process gets its own.
 */
export const DEFAULT_DEV_WORKER_CERTS = 2;

/** Most worker certificates one `init-certs` writes (each is a fresh key pair). */
export const MAX_DEV_WORKER_CERTS = 1000;
