// What a packed package must hold, checked on its unpacked `package/` folder by the pack check
// (scripts/pack-check.mjs): its README and licence; source maps that resolve (every
// `sourceMappingURL` names a shipped map, every map's `sources` are shipped); and, for a package
// with a native addon, every file its binding.gyp compiles and every header those include, since
// the addon is compiled on the installing machine.
//
//   node scripts/tarball-contents.mjs tarballs/*.tgz    prints the problems of each, exits 1 if any
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Every file under `dir`, as paths relative to it. */
function filesUnder(dir, sub = "") {
  return readdirSync(join(dir, sub), { withFileTypes: true }).flatMap((e) => {
    const path = sub === "" ? e.name : `${sub}/${e.name}`;
    return e.isDirectory() ? filesUnder(dir, path) : [path];
  });
}

const MAP_URL = /^\/\/# sourceMappingURL=(\S+)\s*$/m;

/** Maps that a shipped file names but that are missing, and map sources that are missing. */
function sourceMapProblems(pkg, files) {
  const problems = [];
  for (const f of files.filter((f) => /\.(m?js|d\.ts)$/.test(f))) {
    const url = MAP_URL.exec(readFileSync(join(pkg, f), "utf8"))?.[1];
    if (url === undefined || url.startsWith("data:")) continue;
    if (!existsSync(join(pkg, dirname(f), url))) problems.push(`${f} names the source map ${url}, which is not shipped`);
  }
  for (const f of files.filter((f) => f.endsWith(".map"))) {
    const map = JSON.parse(readFileSync(join(pkg, f), "utf8"));
    const root = join(pkg, dirname(f), map.sourceRoot ?? "");
    (map.sources ?? []).forEach((source, i) => {
      if (map.sourcesContent?.[i] != null) return;
      const at = resolve(root, source);
      if (!existsSync(at)) problems.push(`${f} maps to ${relative(pkg, at)}, which is not shipped`);
    });
  }
  return problems;
}

/** Files a native addon's build needs (binding.gyp's sources, the headers they include) that are missing. */
function nativeProblems(pkg) {
  const gyp = join(pkg, "native", "binding.gyp");
  if (!existsSync(gyp)) return [];
  const needed = new Set([...readFileSync(gyp, "utf8").matchAll(/"([\w.-]+\.c)"/g)].map((m) => m[1]));
  for (const f of readdirSync(join(pkg, "native")).filter((f) => /\.[ch]$/.test(f))) {
    for (const m of readFileSync(join(pkg, "native", f), "utf8").matchAll(/^#include "([^"]+)"/gm)) needed.add(m[1]);
  }
  return [...needed]
    .filter((f) => !existsSync(join(pkg, "native", f)))
    .map((f) => `native/${f} is compiled at install (binding.gyp or an #include) but not shipped`);
}

/**
 * What is wrong with an unpacked package (the `package/` folder of its tarball).
 * @returns {string[]} one line per problem; empty when it is complete
 */
export function packageProblems(pkg) {
  const files = filesUnder(pkg);
  const missing = ["README.md", "LICENSE"].filter((f) => !files.includes(f)).map((f) => `${f} is not shipped`);
  return [...missing, ...sourceMapProblems(pkg, files), ...nativeProblems(pkg)];
}

/** Unpacks `tgz` in a scratch folder and returns its problems. */
export function tarballProblems(tgz) {
  const dir = mkdtempSync(join(tmpdir(), "dce-tarball-"));
  try {
    execFileSync("tar", ["xzf", tgz, "-C", dir]);
    return packageProblems(join(dir, "package"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  let bad = 0;
  for (const tgz of process.argv.slice(2)) {
    const problems = tarballProblems(tgz);
    bad += problems.length;
    console.log(`${tgz}: ${problems.length === 0 ? "complete" : `${problems.length} problems`}`);
    for (const p of problems.slice(0, 10)) console.log(`  ${p}`);
    if (problems.length > 10) console.log(`  ... and ${problems.length - 10} more`);
  }
  process.exitCode = bad === 0 ? 0 : 1;
}
