// Checks that the packages are publishable: `pnpm pack` each one, install the
// tarballs together into an empty folder with npm, and run a real job there through
// the installed bins (coordinator init-certs and tokens add, coordinator, worker with
// its certificate, dce submit with its token).
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const work = mkdtempSync(join(tmpdir(), "dce-pack-"));
const tarballs = join(work, "tarballs");
const app = join(work, "app");
const procs = [];

function run(cmd, args, cwd) {
  return execFileSync(cmd, args, { cwd, stdio: ["ignore", "pipe", "inherit"], encoding: "utf8" });
}

function npy(rows, cols, seed) {
  // A v1.0 .npy header written by hand, so this check does not depend on our own writer.
  const header = `{'descr': '<f8', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  const h = `${header}${" ".repeat(pad % 64)}\n`;
  const out = Buffer.alloc(10 + h.length + rows * cols * 8);
  out.write("\x93NUMPY", 0, "latin1");
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(h.length, 8);
  out.write(h, 10, "latin1");
  let x = seed;
  for (let i = 0; i < rows * cols; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    out.writeDoubleLE(x / 2147483648 - 0.5, 10 + h.length + i * 8);
  }
  return out;
}

try {
  run("pnpm", ["-r", "--filter", "./packages/*", "exec", "pnpm", "pack", "--pack-destination", tarballs], root);
  const files = readdirSync(tarballs).filter((f) => f.endsWith(".tgz"));
  console.log(`packed: ${files.join(", ")}`);
  if (files.length !== 6) throw new Error(`expected 6 tarballs, got ${files.length}`);
  run("mkdir", ["-p", app], work);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "dce-pack-check", private: true, type: "module" }));
  run("npm", ["install", "--no-audit", "--no-fund", ...files.map((f) => join(tarballs, f))], app);
  const bin = (name) => join(app, "node_modules", ".bin", name);
  run(bin("coordinator"), ["init-certs", "--out", "certs"], app);
  const token = run(bin("coordinator"), ["tokens", "add", "pack-check", "--data-dir", "data"], app).trim();
  const coord = spawn(bin("coordinator"), ["--tls-dir", "certs", "--port", "0", "--data-dir", "data"], { cwd: app });
  procs.push(coord);
  const url = await new Promise((res, rej) => {
    let out = "";
    coord.stdout.on("data", (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) res(m[1]);
    });
    coord.on("exit", (c) => rej(new Error(`coordinator exited ${c}`)));
    setTimeout(() => rej(new Error("coordinator did not start")), 20_000);
  });
  const worker = spawn(
    bin("worker"),
    [
      "--coordinator",
      url,
      "--ca",
      "certs/ca.pem",
      "--cert",
      "certs/worker-1.pem",
      "--key",
      "certs/worker-1-key.pem",
      "--threads",
      "1",
    ],
    { cwd: app, stdio: ["ignore", "ignore", "inherit"] },
  );
  procs.push(worker);
  writeFileSync(join(app, "A.npy"), npy(17, 9, 1));
  writeFileSync(join(app, "B.npy"), npy(9, 13, 2));
  const out = execFileSync(
    bin("dce"),
    ["submit", "A.npy", "B.npy", "-o", "C.npy", "--coordinator", url, "--ca", "certs/ca.pem", "--tile", "5"],
    { cwd: app, stdio: ["ignore", "pipe", "inherit"], encoding: "utf8", env: { ...process.env, DCE_TOKEN: token } },
  );
  const c = readFileSync(join(app, "C.npy"));
  if (!c.subarray(1, 6).equals(Buffer.from("NUMPY")) || c.length < 17 * 13 * 8) throw new Error("C.npy is not a 17x13 .npy");
  console.log(`installed bins ran a job: ${out.trim().split("\n")[0]} -> C.npy (${c.length} bytes)`);
  console.log("pack check passed");
} finally {
  for (const p of procs) p.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
}
