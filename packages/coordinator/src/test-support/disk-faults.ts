// Test-only: injected disk faults. A test file mocks `node:fs` and `node:fs/promises` with
// the wrappers below; an armed fault makes matching calls fail as the kernel would (an
// Error with `code` ENOSPC, EIO, …). Not part of the build (tsconfig.build.json excludes
// src/test-support). Usage, at the top of a test file:
//
//   vi.mock("node:fs", async (orig) => (await import("./test-support/disk-faults.js")).faultyFs(await orig()));
//   vi.mock("node:fs/promises", async (orig) => (await import("./test-support/disk-faults.js")).faultyFsPromises(await orig()));
import type * as FsType from "node:fs";
import type * as FsPromisesType from "node:fs/promises";

/** The calls a fault can hit. */
export type FaultOp = "open" | "write" | "fsync" | "link" | "rename" | "writeFile";

/** One armed fault. */
export interface DiskFault {
  readonly op: FaultOp;
  /** Matched against the path the call is about (for fd calls, the path the fd was opened with). */
  readonly path: RegExp;
  readonly code: "ENOSPC" | "EDQUOT" | "EIO" | "EROFS";
  /** Calls it fails before it disarms itself; default every call until {@link faults.clear}. */
  times?: number;
  /** For `write`: bytes let through by the first matching call before the fault (a partial write). */
  partialBytes?: number | undefined;
}

const armed: DiskFault[] = [];
const fdPaths = new Map<number, string>();

/** Arms and clears faults; `hits` counts the calls failed so far. */
export const faults = {
  hits: 0,
  /** When set, statfsSync reports this many bytes free (blocks of 4 KiB). */
  freeBytes: undefined as number | undefined,
  arm(f: DiskFault): void {
    armed.push({ ...f });
  },
  clear(): void {
    armed.length = 0;
    this.hits = 0;
    this.freeBytes = undefined;
  },
};

function match(op: FaultOp, path: string | undefined): DiskFault | undefined {
  if (path === undefined) return undefined;
  const f = armed.find((x) => x.op === op && x.path.test(path));
  if (f === undefined) return undefined;
  if (f.partialBytes !== undefined) return f; // decided by the caller
  hit(f);
  return f;
}

function hit(f: DiskFault): void {
  faults.hits++;
  if (f.times !== undefined && --f.times <= 0) armed.splice(armed.indexOf(f), 1);
}

function fault(f: DiskFault, syscall: string, path: string): Error {
  return Object.assign(new Error(`${f.code}: injected fault, ${syscall} '${path}'`), { code: f.code, syscall, path });
}

const pathOf = (p: unknown): string | undefined => (typeof p === "string" ? p : p instanceof URL ? p.pathname : undefined);

/** `node:fs` with the armed faults applied. */
export function faultyFs(real: typeof FsType): typeof FsType {
  const wrapped = {
    openSync(path: FsType.PathLike, ...rest: unknown[]): number {
      const f = match("open", pathOf(path));
      if (f) throw fault(f, "open", String(path));
      const fd = (real.openSync as (...a: unknown[]) => number)(path, ...rest);
      fdPaths.set(fd, String(path));
      return fd;
    },
    closeSync(fd: number): void {
      fdPaths.delete(fd);
      real.closeSync(fd);
    },
    writeSync(fd: number, ...rest: unknown[]): number {
      const f = match("write", fdPaths.get(fd));
      if (f?.partialBytes !== undefined) {
        const [buf, off = 0, len, pos] = rest as [Uint8Array, number?, number?, number?];
        const part = Math.min(f.partialBytes, len ?? buf.byteLength - off);
        f.partialBytes = undefined;
        if (part > 0) return real.writeSync(fd, buf, off, part, pos);
        hit(f);
        throw fault(f, "write", fdPaths.get(fd) ?? "");
      }
      if (f) throw fault(f, "write", fdPaths.get(fd) ?? "");
      return (real.writeSync as (...a: unknown[]) => number)(fd, ...rest);
    },
    fsyncSync(fd: number): void {
      const f = match("fsync", fdPaths.get(fd));
      if (f) throw fault(f, "fsync", fdPaths.get(fd) ?? "");
      real.fsyncSync(fd);
    },
    fdatasync(fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void {
      const f = match("fsync", fdPaths.get(fd));
      if (f) {
        const e = fault(f, "fdatasync", fdPaths.get(fd) ?? "");
        queueMicrotask(() => cb(e));
        return;
      }
      real.fdatasync(fd, cb);
    },
    linkSync(src: FsType.PathLike, dest: FsType.PathLike): void {
      const f = match("link", pathOf(dest));
      if (f) throw fault(f, "link", String(dest));
      real.linkSync(src, dest);
    },
    renameSync(src: FsType.PathLike, dest: FsType.PathLike): void {
      const f = match("rename", pathOf(dest));
      if (f) throw fault(f, "rename", String(dest));
      real.renameSync(src, dest);
    },
    writeFileSync(file: FsType.PathOrFileDescriptor, ...rest: unknown[]): void {
      const path = typeof file === "number" ? fdPaths.get(file) : pathOf(file);
      const f = match("writeFile", path);
      if (f) throw fault(f, "write", path ?? "");
      (real.writeFileSync as (...a: unknown[]) => void)(file, ...rest);
    },
    statfsSync(path: FsType.PathLike, ...rest: unknown[]): FsType.StatsFs {
      const s = (real.statfsSync as (...a: unknown[]) => FsType.StatsFs)(path, ...rest);
      if (faults.freeBytes === undefined) return s;
      return { ...s, bsize: 4096, bavail: Math.floor(faults.freeBytes / 4096) };
    },
  };
  return { ...real, ...wrapped, default: { ...real, ...wrapped } } as unknown as typeof FsType;
}

/** `node:fs/promises` with the armed faults applied to `open` (its handle's writes and syncs) and `writeFile`. */
export function faultyFsPromises(real: typeof FsPromisesType): typeof FsPromisesType {
  const wrapHandle = (fh: FsPromisesType.FileHandle, path: string): FsPromisesType.FileHandle =>
    new Proxy(fh, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== "function") return value;
        if (prop === "write" || prop === "writeFile") {
          return async (...args: unknown[]) => {
            const f = match("write", path);
            if (f?.partialBytes !== undefined) {
              const [buf, off = 0, len] = args as [Uint8Array, number?, number?];
              const part = Math.min(f.partialBytes, len ?? buf.byteLength - off);
              f.partialBytes = undefined;
              if (part > 0) return target.write(buf, off, part);
              hit(f);
              throw fault(f, "write", path);
            }
            if (f) throw fault(f, "write", path);
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        if (prop === "datasync" || prop === "sync") {
          return async () => {
            const f = match("fsync", path);
            if (f) throw fault(f, "fsync", path);
            return (value as () => unknown).apply(target);
          };
        }
        return (value as (...a: unknown[]) => unknown).bind(target);
      },
    });
  const wrapped = {
    async open(path: FsType.PathLike, ...rest: unknown[]): Promise<FsPromisesType.FileHandle> {
      const f = match("open", pathOf(path));
      if (f) throw fault(f, "open", String(path));
      const fh = await (real.open as (...a: unknown[]) => Promise<FsPromisesType.FileHandle>)(path, ...rest);
      return wrapHandle(fh, String(path));
    },
    async writeFile(file: FsType.PathLike, ...rest: unknown[]): Promise<void> {
      const f = match("writeFile", pathOf(file));
      if (f) {
        // As the kernel would: part of the file is there when the disk fills.
        await real.writeFile(file, "partial");
        throw fault(f, "write", String(file));
      }
      await (real.writeFile as (...a: unknown[]) => Promise<void>)(file, ...rest);
    },
  };
  return { ...real, ...wrapped, default: { ...real, ...wrapped } } as unknown as typeof FsPromisesType;
}
