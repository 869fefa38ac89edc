// Finds the code examples of the docs, for the docs test (test/integration/docs-examples.test.ts)
// and the pack check (scripts/pack-check.mjs): every fenced block of a markdown file, and every
// fenced block inside a TSDoc comment of a source file, with the `docs-test` directives written
// just before it.
//
// A directive is an HTML comment on the lines right before the fence (so it does not show
// where the markdown or the TSDoc is rendered); several may be stacked:
//   <!-- docs-test: skip (REASON) -->             the block is not run; the test lists it with REASON
//   <!-- docs-test: background until "TEXT" -->   a shell block that keeps running: the blocks after
//                                                 it run once its output contains TEXT, and it is
//                                                 sent SIGTERM at the end and must then exit
//   <!-- docs-test: serves for N s -->            a TypeScript block that runs until SIGTERM: it must
//                                                 still run after N s, then exit 0 on SIGTERM
//   <!-- docs-test: prelude                       code run just before the block, in its language
//   CODE                                          (the declarations a TSDoc fragment leaves out,
//   -->                                           the coordinator a worker example needs)

const DIRECTIVE = "docs-test:";

/**
 * @typedef {{ file: string; line: number; lang: string; code: string; skip?: string;
 *   background?: string; servesForS?: number; prelude?: string }} DocBlock
 */

/** Parses the directive comments that end on line index `end` (inclusive), walking upwards. */
function directivesAbove(lines, end, where) {
  const found = {};
  let i = end;
  while (i >= 0 && lines[i]?.trim().endsWith("-->")) {
    let start = i;
    while (start >= 0 && !lines[start]?.trim().startsWith("<!--")) start--;
    if (start < 0) break;
    const text = lines
      .slice(start, i + 1)
      .join("\n")
      .trim()
      .replace(/^<!--\s*/, "")
      .replace(/\s*-->$/, "");
    if (!text.startsWith(DIRECTIVE)) break;
    const body = text.slice(DIRECTIVE.length).trim();
    const skip = /^skip \((.+)\)$/s.exec(body);
    const background = /^background until "(.+)"$/.exec(body);
    const serves = /^serves for (\d+) s$/.exec(body);
    if (skip?.[1]) found.skip = skip[1].trim();
    else if (background?.[1]) found.background = background[1];
    else if (serves?.[1]) found.servesForS = Number(serves[1]);
    else if (body.startsWith("prelude\n")) found.prelude = body.slice("prelude\n".length);
    else throw new Error(`${where}: unknown docs-test directive "${body.split("\n")[0]}"`);
    i = start - 1;
  }
  return found;
}

/**
 * The fenced blocks of `text` (markdown), with their directives. `lineOffset` is added to
 * the reported line numbers (1-based, the line of the opening fence).
 * @returns {DocBlock[]}
 */
export function markdownBlocks(file, text, lineOffset = 0) {
  const lines = text.split("\n");
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```([\w-]*)\s*$/.exec(lines[i] ?? "");
    if (!open) continue;
    const indent = open[1]?.length ?? 0;
    let end = i + 1;
    while (end < lines.length && lines[end]?.trim() !== "```") end++;
    if (end >= lines.length) throw new Error(`${file}:${i + 1 + lineOffset}: a code block is never closed`);
    const line = i + 1 + lineOffset;
    const code = lines
      .slice(i + 1, end)
      .map((l) => l.slice(Math.min(indent, l.length - l.trimStart().length)))
      .join("\n");
    out.push({ file, line, lang: open[2] ?? "", code, ...directivesAbove(lines, i - 1, `${file}:${line}`) });
    i = end;
  }
  return out;
}

/**
 * The fenced blocks inside the `/** … *\/` comments of a TypeScript source (the TSDoc
 * `@example`s), with their directives; line numbers are the source's.
 * @returns {DocBlock[]}
 */
export function tsdocBlocks(file, source) {
  return markdownBlocks(file, tsdocText(source).join("\n"));
}

/**
 * The 1-based lines of the `@example` tags of a TypeScript source that no fenced block
 * follows (only `docs-test` directives may come between): code written straight after
 * the tag is not found by {@link tsdocBlocks}, so it would never run.
 * @returns {number[]}
 */
export function unfencedTsdocExamples(source) {
  const lines = tsdocText(source);
  const out = [];
  for (const [i, l] of lines.entries()) {
    if (!/^\s*@example\b/.test(l)) continue;
    let j = i + 1;
    for (let inComment = false; j < lines.length; j++) {
      const t = lines[j]?.trim() ?? "";
      if (inComment || t.startsWith("<!--")) inComment = !t.endsWith("-->");
      else if (t !== "") break;
    }
    if (!/^\s*```/.test(lines[j] ?? "")) out.push(i + 1);
  }
  return out;
}

/** The source's lines: empty outside doc comments, without their " * " inside. */
function tsdocText(source) {
  // Every line outside a doc comment becomes empty, every line inside loses its " * ",
  // so the markdown parser sees the comments' text at the source's line numbers.
  let inDoc = false;
  return source.split("\n").map((l) => {
    const t = l.trim();
    if (!inDoc && t.startsWith("/**")) {
      inDoc = !t.endsWith("*/");
      return "";
    }
    if (!inDoc) return "";
    if (t.endsWith("*/")) {
      inDoc = false;
      return "";
    }
    return l.replace(/^\s*\* ?/, "");
  });
}

export const APP_SECTION = "## Use dce in your app";
export const DEV_SECTION = "### Development cluster";

/**
 * The blocks of README.md's "Use dce in your app" section that the pack check runs from the
 * packed tarballs: the first sh block (the app's setup), the first js block (app.mjs) and the
 * sh block of its "Development cluster" subsection.
 * @returns {{ sh: DocBlock; js: DocBlock; dev: DocBlock }}
 */
export function appSectionBlocks(readme) {
  const start = readme.indexOf(`\n${APP_SECTION}\n`);
  if (start < 0) throw new Error(`README.md has no "${APP_SECTION}" section`);
  const end = readme.indexOf("\n## ", start + APP_SECTION.length + 2);
  const startLine = readme.slice(0, start + 1).split("\n").length - 1;
  const section = readme.slice(start + 1, end < 0 ? undefined : end);
  const blocks = markdownBlocks("README.md", section, startLine);
  const sh = blocks.find((b) => b.lang === "sh");
  const js = blocks.find((b) => b.lang === "js");
  const devStart = section.indexOf(`\n${DEV_SECTION}\n`);
  const devLine = devStart < 0 ? Number.POSITIVE_INFINITY : startLine + section.slice(0, devStart + 1).split("\n").length;
  const dev = blocks.find((b) => b.lang === "sh" && b.line > devLine);
  if (!sh || !js) throw new Error(`"${APP_SECTION}" needs a sh block and a js block`);
  if (!dev) throw new Error(`"${APP_SECTION}" needs a "${DEV_SECTION}" with a sh block`);
  return { sh, js, dev };
}
