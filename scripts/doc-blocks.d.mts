/** A fenced code block of the docs, with the `docs-test` directives written before it (see doc-blocks.mjs). */
export interface DocBlock {
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  code: string;
  skip?: string;
  background?: string;
  servesForS?: number;
  prelude?: string;
}
export function markdownBlocks(file: string, text: string, lineOffset?: number): DocBlock[];
export function tsdocBlocks(file: string, source: string): DocBlock[];
export function unfencedTsdocExamples(source: string): number[];
export const APP_SECTION: string;
export const DEV_SECTION: string;
export function appSectionBlocks(readme: string): { sh: DocBlock; js: DocBlock; dev: DocBlock };
