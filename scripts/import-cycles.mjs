#!/usr/bin/env node
// Fails when the relative imports inside packages/*/src form a circle.
//
// A circle means no file in it can be read, tested or loaded on its own, and module
// evaluation order starts to matter (a class used before its module has run). The only
// circles allowed are made entirely of `import type` / `export type` edges (erased at
// build time, so they never load anything), and each must be listed in TYPE_ONLY_ALLOWED
// below with the reason it is there.
//
// Edges counted: static `import … from`, `export … from` and dynamic `import("…")` with a
// relative specifier. An import with inline type specifiers (`import { type A } from`)
// is a value edge: under `verbatimModuleSyntax` it still loads the module. Generated code
// (src/gen/**) is left out. Cross-package imports cannot circle: package dependencies
// point one way (see docs/architecture.md).
//
// Usage: node scripts/import-cycles.mjs        (exit 0: no circle; 1: circles, listed)
//        node scripts/import-cycles.mjs --list (prints every edge, for debugging)

import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * Circles made only of type-only edges that are allowed, keyed by their files (sorted,
 * joined with " "), with the reason. Keep it short: a new entry needs a reason a reviewer
 * accepts, and an entry whose circle changes shape fails again (its key no longer matches).
 * @type {Record<string, string>}
 */
const TYPE_ONLY_ALLOWED = {};

/** Every hand-written .ts file under packages/<pkg>/src, as paths relative to the root. */
function sourceFiles() {
  const out = [];
  const packagesDir = join(ROOT, "packages");
  for (const pkg of readdirSync(packagesDir)) {
    const src = join(packagesDir, pkg, "src");
    if (existsSync(src)) walk(src, out);
  }
  return out.map((f) => relative(ROOT, f)).sort();
}

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (name !== "gen" && name !== "node_modules") walk(path, out);
    } else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) {
      out.push(path);
    }
  }
}

/** The file a relative specifier names (`./x.js` → `./x.ts`, `./dir` → `./dir/index.ts`), or undefined. */
function resolveSpecifier(fromFile, specifier) {
  const base = resolve(ROOT, dirname(fromFile), specifier);
  const candidates = [base.replace(/\.js$/, ".ts"), base.replace(/\.mjs$/, ".mts"), `${base}.ts`, join(base, "index.ts")];
  for (const c of candidates) {
    if (existsSync(c) && statSync(c).isFile()) return relative(ROOT, c);
  }
  return undefined;
}

/** The relative imports of one file: `{ to, typeOnly }` per statement. */
function importsOf(file) {
  const text = readFileSync(join(ROOT, file), "utf8");
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const edges = [];
  const add = (specifier, typeOnly) => {
    if (!specifier.startsWith(".")) return;
    const to = resolveSpecifier(file, specifier);
    if (to !== undefined) edges.push({ to, typeOnly });
  };
  for (const st of sf.statements) {
    if (ts.isImportDeclaration(st) && ts.isStringLiteral(st.moduleSpecifier)) {
      add(st.moduleSpecifier.text, st.importClause?.isTypeOnly === true);
    } else if (ts.isExportDeclaration(st) && st.moduleSpecifier && ts.isStringLiteral(st.moduleSpecifier)) {
      add(st.moduleSpecifier.text, st.isTypeOnly);
    }
  }
  const visit = (node) => {
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg && ts.isStringLiteralLike(arg)) add(arg.text, false);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      add(node.argument.literal.text, true); // `import("./x.js").T` in a type position
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return edges;
}

/** Strongly connected components with more than one file, or a file importing itself (Tarjan). */
function circles(graph) {
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const found = [];
  const connect = (v) => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v), idx.get(w)));
      }
    }
    if (low.get(v) === idx.get(v)) {
      const scc = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? new Set()).has(v)) found.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) connect(v);
  return found;
}

/** One concrete loop through a component, for the message: a → b → … → a. */
function loopThrough(graph, scc) {
  const members = new Set(scc);
  const start = scc[0];
  const prev = new Map([[start, undefined]]);
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift();
    for (const w of graph.get(v) ?? []) {
      if (!members.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let x = v; x !== start; x = prev.get(x)) path.splice(1, 0, x);
        return [...path, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return scc;
}

/** The component's files that the printed loop leaves out, if any. */
function others(graph, scc) {
  const shown = new Set(loopThrough(graph, scc));
  const rest = scc.filter((f) => !shown.has(f));
  return rest.length > 0 ? `\n  (same circle: ${rest.join(", ")})` : "";
}

function main() {
  const files = sourceFiles();
  const all = new Map(files.map((f) => [f, new Set()]));
  const values = new Map(files.map((f) => [f, new Set()]));
  for (const f of files) {
    for (const { to, typeOnly } of importsOf(f)) {
      all.get(f).add(to);
      if (!typeOnly) values.get(f).add(to);
      if (process.argv.includes("--list")) console.log(`${f} -> ${to}${typeOnly ? " (type)" : ""}`);
    }
  }

  const problems = [];
  for (const scc of circles(values)) {
    problems.push(`import circle: ${loopThrough(values, scc).join("\n  → ")}${others(values, scc)}`);
  }
  const valueSccs = new Set(circles(values).map((s) => s.join(" ")));
  for (const scc of circles(all)) {
    const key = scc.join(" ");
    if (valueSccs.has(key) || TYPE_ONLY_ALLOWED[key] !== undefined) continue;
    problems.push(
      `type-only import circle (allow it in TYPE_ONLY_ALLOWED with a reason, or break it): ${loopThrough(all, scc).join("\n  → ")}${others(all, scc)}`,
    );
  }

  if (problems.length > 0) {
    console.error(problems.join("\n\n"));
    console.error(`\n${problems.length} import circle(s) in packages/*/src (see scripts/import-cycles.mjs).`);
    process.exit(1);
  }
  console.log(`import-cycles: ${files.length} files, no circles.`);
}

main();
