/**
 * The extension's reader of `# tune:` annotations: where they are in a `%%tune` cell and
 * how nbtune reads them. It mirrors `nbtune.cell._space.parse_annotation` and `nbtune.cell._parse`
 * (same messages, same layout of numbers and strings); tests/annotation_cases.json holds the
 * cases both readers must agree on. When nbtune is loaded in the kernel, the kernel's own
 * reading replaces this one, so tooltips always say exactly what the magic would say.
 */

import {
  literalEval,
  NotALiteral,
  parseExpression,
  PySyntaxError,
  PyValue,
  repr,
  str,
  unparse
} from './pyexpr';

/** Distribution name -> argument names, in the order nbtune lists them. */
export const DISTRIBUTIONS: Record<string, string[]> = {
  uniform: ['lo', 'hi'],
  loguniform: ['lo', 'hi'],
  quniform: ['lo', 'hi', 'q'],
  qloguniform: ['lo', 'hi', 'q'],
  normal: ['mu', 'sigma'],
  lognormal: ['median', 'sigma'],
  randint: ['lo', 'hi'],
  choice: []
};

/** The error for an annotation that is not at the end of a top-level `NAME = DEFAULT`. */
export const NOT_TOP_LEVEL =
  "'# tune:' must end a top-level assignment 'NAME = DEFAULT'";

const MARK = 'tune:';
const HEADER = /^%%tune(?=\s|$)/;

/** One `# tune:` comment in a cell and how it reads. */
export interface IAnnotation {
  /** 1-based line in the cell as the user sees it (the `%%tune` header is line 1). */
  line: number;
  /** 0-based column of the comment's `#`. */
  column: number;
  /** Length of the comment. */
  length: number;
  /** The assigned variable, when the comment ends a top-level assignment. */
  name: string | null;
  /** How it was read, e.g. `lr: loguniform(lo=1e-05, hi=0.1)` (absent for errors). */
  reading?: string;
  /** Why it cannot be read, as the magic says it (without the `line N: ` prefix). */
  error?: string;
}

class AnnotationError extends Error {}

function isNumber(
  v: PyValue
): v is { kind: 'int'; value: bigint } | { kind: 'float'; value: number } {
  return v.kind === 'int' || v.kind === 'float';
}

function num(v: PyValue): number {
  return Number((v as { value: bigint | number }).value);
}

function checkBounds(dist: string, args: PyValue[]): void {
  DISTRIBUTIONS[dist].forEach((what, i) => {
    const v = args[i];
    if (!isNumber(v)) {
      throw new AnnotationError(
        `${dist}(): ${what} must be a number, got ${repr(v)}`
      );
    }
    if (!Number.isFinite(num(v))) {
      throw new AnnotationError(
        `${dist}(): ${what} must be finite, got ${repr(v)}`
      );
    }
  });
  if (
    ['uniform', 'loguniform', 'quniform', 'qloguniform', 'randint'].includes(
      dist
    )
  ) {
    if (num(args[0]) >= num(args[1])) {
      throw new AnnotationError(
        `${dist}(): lo must be less than hi, got ${repr(args[0])} >= ${repr(args[1])}`
      );
    }
  }
  if ((dist === 'loguniform' || dist === 'qloguniform') && num(args[0]) <= 0) {
    throw new AnnotationError(
      `${dist}(): bounds must be positive, got lo=${repr(args[0])}`
    );
  }
  if ((dist === 'quniform' || dist === 'qloguniform') && num(args[2]) <= 0) {
    throw new AnnotationError(
      `${dist}(): q must be positive, got ${repr(args[2])}`
    );
  }
  if ((dist === 'normal' || dist === 'lognormal') && num(args[1]) <= 0) {
    throw new AnnotationError(
      `${dist}(): sigma must be positive, got ${repr(args[1])}`
    );
  }
  if (dist === 'lognormal' && num(args[0]) <= 0) {
    throw new AnnotationError(
      `lognormal(): median must be positive, got ${repr(args[0])}`
    );
  }
  if (dist === 'randint' && !args.every(a => a.kind === 'int')) {
    throw new AnnotationError(
      `randint(): bounds must be integers, got ${repr({ kind: 'tuple', items: args })}`
    );
  }
}

/** Say how an annotation was read, as `Param.describe()` does. */
export function describe(name: string, dist: string, args: PyValue[]): string {
  if (dist === 'choice') {
    return `${name}: one of ${args.map(repr).join(', ')}`;
  }
  if (dist === 'randint') {
    return `${name}: integer ${str(args[0])} <= x < ${str(args[1])}`;
  }
  const shown = DISTRIBUTIONS[dist]
    .map((k, i) => `${k}=${repr(args[i])}`)
    .join(', ');
  return `${name}: ${dist}(${shown})`;
}

function parse(name: string, raw: string): string {
  const text = raw.trim();
  let tree;
  try {
    tree = parseExpression(text);
  } catch (e) {
    if (e instanceof PySyntaxError) {
      throw new AnnotationError(
        `cannot read annotation '# tune: ${text}' (expected DIST(ARGS))`
      );
    }
    throw e;
  }
  if (tree.type !== 'call' || tree.func.type !== 'name') {
    throw new AnnotationError(
      `annotation '# tune: ${text}' is not of the form DIST(ARGS)`
    );
  }
  const dist = tree.func.id;
  if (!(dist in DISTRIBUTIONS)) {
    const known = Object.keys(DISTRIBUTIONS).join(', ');
    throw new AnnotationError(
      `unknown distribution '${dist}' (known: ${known})`
    );
  }
  if (tree.keywords.length) {
    throw new AnnotationError(`${dist}() takes positional arguments only`);
  }
  let args = tree.args.map(node => {
    try {
      return literalEval(node);
    } catch (e) {
      if (e instanceof NotALiteral) {
        throw new AnnotationError(
          `${dist}() arguments must be Python literals, got '${unparse(node)}'`
        );
      }
      throw e;
    }
  });
  if (dist === 'choice') {
    const only = args[0];
    if (args.length === 1 && (only.kind === 'list' || only.kind === 'tuple')) {
      args = only.items; // choice([a, b]) reads like hp.choice; accepted too
    }
    if (!args.length) {
      throw new AnnotationError('choice() needs at least one option');
    }
    return describe(name, dist, args);
  }
  if (dist === 'randint' && args.length === 1) {
    args = [{ kind: 'int', value: BigInt(0) }, args[0]];
  }
  const expected = DISTRIBUTIONS[dist];
  if (args.length !== expected.length) {
    throw new AnnotationError(
      `${dist}() takes ${expected.length} arguments (${expected.join(', ')}), got ${args.length}`
    );
  }
  checkBounds(dist, args);
  return describe(name, dist, args);
}

/** Read the `DIST(ARGS)` text of one annotation for parameter `name`. */
export function readAnnotation(
  name: string,
  text: string
): { reading: string } | { error: string } {
  try {
    return { reading: parse(name, text) };
  } catch (e) {
    if (e instanceof AnnotationError) {
      return { error: e.message };
    }
    throw e;
  }
}

/** Whether a cell is a `%%tune` cell. */
export function isTuneCell(source: string): boolean {
  return HEADER.test(source);
}

/** The text a tooltip shows: the reading, or the error as the magic words it. */
export function annotationMessage(a: IAnnotation): string {
  return a.error === undefined
    ? (a.reading ?? '')
    : `line ${a.line}: ${a.error}`;
}

interface IComment {
  line: number;
  column: number;
  length: number;
  text: string;
  logical: number; // index into the logical lines, -1 for a comment on a line of its own
}

interface ILogical {
  indented: boolean;
  escaped: boolean; // an IPython `%magic` or `!shell` line: its comments are not annotations
  code: string; // the code with strings blanked out and comments removed
}

const STRING_START = /^[rRuUbBfF]{0,2}('''|"""|'|")/;

/** Split cell text into logical lines (statements) and comments, as Python's tokenizer would. */
function scan(lines: string[]): { logicals: ILogical[]; comments: IComment[] } {
  const logicals: ILogical[] = [];
  const comments: IComment[] = [];
  let depth = 0;
  let open: string | null = null; // the quote of a string still open at the end of a line
  let continued = false;
  let current: ILogical | null = null;
  lines.forEach((text, index) => {
    const line = index + 1;
    const comment = (column: number, logical: number): void => {
      const body = text.slice(column).trimEnd();
      comments.push({ line, column, length: body.length, text: body, logical });
    };
    if (current === null || (depth === 0 && open === null && !continued)) {
      depth = 0;
      const stripped = text.trim();
      if (stripped === '' || stripped.startsWith('#')) {
        if (stripped) {
          comment(text.indexOf('#'), -1);
        }
        current = null;
        return;
      }
      current = {
        indented: /^\s/.test(text),
        escaped: /^[%!]/.test(stripped),
        code: ''
      };
      logicals.push(current);
    }
    continued = false;
    let code = '';
    let i = 0;
    while (i < text.length) {
      const ch = text[i];
      if (open !== null) {
        if (ch === '\\') {
          i += 2;
          continue;
        }
        if (text.startsWith(open, i)) {
          i += open.length;
          open = null;
          code += '0';
          continue;
        }
        i += 1;
        continue;
      }
      if (ch === '#') {
        comment(i, logicals.length - 1);
        break;
      }
      const quote =
        i === 0 || !/\w/.test(text[i - 1])
          ? STRING_START.exec(text.slice(i))
          : null;
      if (quote) {
        open = quote[1];
        i += quote[0].length;
        continue;
      }
      if (ch === '\\' && i === text.length - 1) {
        continued = true;
        break;
      }
      if ('([{'.includes(ch)) {
        depth += 1;
      } else if (')]}'.includes(ch)) {
        depth = Math.max(0, depth - 1);
      }
      code += ch;
      i += 1;
    }
    if (open !== null && open.length === 1 && !text.endsWith('\\')) {
      open = null; // an unterminated one-line string ends with its line
    }
    current.code += `${code} `;
  });
  return { logicals, comments };
}

/** The first statement of a logical line (statements split at `;` outside brackets). */
function firstStatement(code: string): string {
  let depth = 0;
  for (let i = 0; i < code.length; i++) {
    const ch = code[i];
    if ('([{'.includes(ch)) {
      depth += 1;
    } else if (')]}'.includes(ch)) {
      depth -= 1;
    } else if (ch === ';' && depth === 0) {
      return code.slice(0, i);
    }
  }
  return code;
}

/** The variable a statement assigns, when it is `NAME = VALUE` or `NAME: TYPE = VALUE`. */
function targetName(statement: string): string | null {
  const head = /^([A-Za-z_]\w*)\s*([:=])/.exec(statement);
  if (
    !head ||
    ['lambda', 'if', 'for', 'while', 'with', 'def', 'class'].includes(head[1])
  ) {
    return null;
  }
  const lambda = /\blambda\b/.exec(statement);
  const end = lambda ? lambda.index : statement.length;
  let depth = 0;
  let assignments = 0;
  for (let i = 0; i < end; i++) {
    const ch = statement[i];
    if ('([{'.includes(ch)) {
      depth += 1;
    } else if (')]}'.includes(ch)) {
      depth -= 1;
    } else if (
      ch === '=' &&
      depth === 0 &&
      !'=<>!:'.includes(statement[i - 1] ?? '') &&
      statement[i + 1] !== '='
    ) {
      assignments += 1;
    }
  }
  return assignments === 1 ? head[1] : null;
}

/**
 * Find and read every `# tune:` annotation of a cell. The cell may start with its
 * `%%tune` header (then line numbers count it, as the magic's messages do).
 */
export function readCell(source: string): IAnnotation[] {
  const offset = isTuneCell(source) ? 1 : 0;
  const body = offset
    ? source.slice(source.indexOf('\n') + 1 || source.length)
    : source;
  const lines = body.split(/\r?\n/);
  const { logicals, comments } = scan(lines);
  const marks = comments.filter(c =>
    c.text.replace(/^#+/, '').trim().startsWith(MARK)
  );
  const out: IAnnotation[] = [];
  const seen = new Set<string>();
  for (const c of marks) {
    const logical = c.logical >= 0 ? logicals[c.logical] : null;
    if (logical?.escaped) {
      continue; // IPython turns `%magic ... # tune:` into a string: no annotation there
    }
    const base = { line: c.line + offset, column: c.column, length: c.length };
    const siblings = marks.filter(m => m.logical === c.logical);
    const name =
      logical && !logical.indented
        ? targetName(firstStatement(logical.code.trim()))
        : null;
    if (name === null || siblings.length > 1) {
      out.push({ ...base, name, error: NOT_TOP_LEVEL });
      continue;
    }
    if (seen.has(name)) {
      out.push({
        ...base,
        name,
        error: `parameter '${name}' is annotated twice`
      });
      continue;
    }
    seen.add(name);
    const text = c.text.replace(/^#+/, '').trim().slice(MARK.length);
    out.push({ ...base, name, ...readAnnotation(name, text) });
  }
  return out;
}
