/**
 * A small reader of Python expressions: enough of Python's grammar, `ast.literal_eval`
 * and `repr` for the text of a `# tune:` annotation to be read as nbtune's Python parser
 * reads it (see tests/annotation_cases.json, shared with the Python tests).
 */

/** A Python value that `ast.literal_eval` can produce (complex and bytes are not handled). */
export type PyValue =
  | { kind: 'int'; value: bigint }
  | { kind: 'float'; value: number }
  | { kind: 'str'; value: string }
  | { kind: 'bool'; value: boolean }
  | { kind: 'none' }
  | { kind: 'list' | 'tuple' | 'set'; items: PyValue[] }
  | { kind: 'dict'; entries: [PyValue, PyValue][] };

/** A node of the expression tree, shaped like the few `ast` nodes it stands for. */
export type PyNode =
  | { type: 'const'; value: PyValue }
  | { type: 'name'; id: string }
  | { type: 'unary'; op: string; operand: PyNode }
  | { type: 'binop'; op: string; left: PyNode; right: PyNode }
  | { type: 'call'; func: PyNode; args: PyNode[]; keywords: IKeyword[] }
  | { type: 'starred'; value: PyNode }
  | { type: 'attr'; value: PyNode; attr: string }
  | { type: 'subscript'; value: PyNode; index: PyNode }
  | { type: 'list' | 'tuple' | 'set'; elts: PyNode[] }
  | { type: 'dict'; keys: PyNode[]; values: PyNode[] };

/** A keyword argument of a call (`arg=value`). */
export interface IKeyword {
  arg: string;
  value: PyNode;
}

/** Raised for text that Python would reject with a SyntaxError. */
export class PySyntaxError extends Error {}

/** Raised where `ast.literal_eval` raises ValueError (the node is not a literal). */
export class NotALiteral extends Error {
  constructor(readonly node: PyNode) {
    super('not a literal');
  }
}

interface IToken {
  kind: 'num' | 'str' | 'name' | 'op' | 'end';
  text: string;
  value?: PyValue;
}

const NUMBER =
  /^(?:0[xX](?:_?[0-9a-fA-F])+|0[oO](?:_?[0-7])+|0[bB](?:_?[01])+|(?:(?:\d(?:_?\d)*)?\.\d(?:_?\d)*|\d(?:_?\d)*\.?)(?:[eE][+-]?\d(?:_?\d)*)?)[jJ]?/;
const NAME = /^[A-Za-z_\u00c0-\uffff][\w\u00c0-\uffff]*/;
const OPERATORS = [
  '**',
  '//',
  '<<',
  '>>',
  '<=',
  '>=',
  '==',
  '!=',
  '(',
  ')',
  '[',
  ']',
  '{',
  '}',
  ',',
  ':',
  '.',
  '+',
  '-',
  '*',
  '/',
  '%',
  '@',
  '=',
  '~',
  '<',
  '>',
  '|',
  '&',
  '^'
];
const ESCAPES: Record<string, string> = {
  n: '\n',
  t: '\t',
  r: '\r',
  '0': '\0',
  a: '\x07',
  b: '\b',
  f: '\f',
  v: '\v',
  '\\': '\\',
  "'": "'",
  '"': '"',
  '\n': ''
};

function numberToken(text: string): IToken {
  if (/[jJ]$/.test(text)) {
    throw new PySyntaxError('complex numbers are not supported');
  }
  const clean = text.replace(/_/g, '');
  const isFloat = !/^0[xXoObB]/.test(clean) && /[.eE]/.test(clean);
  if (isFloat) {
    return {
      kind: 'num',
      text,
      value: { kind: 'float', value: Number(clean) }
    };
  }
  if (/^0\d/.test(clean) && /[1-9]/.test(clean)) {
    throw new PySyntaxError('leading zeros in decimal integer literals');
  }
  return { kind: 'num', text, value: { kind: 'int', value: BigInt(clean) } };
}

/** Read a string literal starting at `start` (after any prefix); return its value and end. */
function readString(
  src: string,
  start: number,
  raw: boolean
): [string, number] {
  const triple = src.startsWith(src[start].repeat(3), start);
  const quote = triple ? src[start].repeat(3) : src[start];
  let i = start + quote.length;
  let value = '';
  while (i < src.length) {
    if (src.startsWith(quote, i)) {
      return [value, i + quote.length];
    }
    const ch = src[i];
    if (ch === '\n' && !triple) {
      break;
    }
    if (ch === '\\' && i + 1 < src.length) {
      const next = src[i + 1];
      if (raw) {
        value += ch + next;
      } else if (next in ESCAPES) {
        value += ESCAPES[next];
      } else if (
        next === 'x' &&
        /^[0-9a-fA-F]{2}$/.test(src.slice(i + 2, i + 4))
      ) {
        value += String.fromCharCode(parseInt(src.slice(i + 2, i + 4), 16));
        i += 2;
      } else if (
        next === 'u' &&
        /^[0-9a-fA-F]{4}$/.test(src.slice(i + 2, i + 6))
      ) {
        value += String.fromCharCode(parseInt(src.slice(i + 2, i + 6), 16));
        i += 4;
      } else {
        value += ch + next; // an unknown escape stays as written, as in Python
      }
      i += 2;
      continue;
    }
    value += ch;
    i += 1;
  }
  throw new PySyntaxError('unterminated string literal');
}

function tokenize(src: string): IToken[] {
  const tokens: IToken[] = [];
  let i = 0;
  while (i < src.length) {
    const rest = src.slice(i);
    const ch = src[i];
    if (ch === ' ' || ch === '\t' || ch === '\f') {
      i += 1;
      continue;
    }
    if (ch === '#') {
      break; // a comment runs to the end of the line
    }
    const prefix = /^([rRuUbBfF]{0,2})(['"])/.exec(rest);
    if (prefix) {
      const letters = prefix[1].toLowerCase();
      if (letters.includes('b') || letters.includes('f')) {
        throw new PySyntaxError('bytes and f-strings are not supported');
      }
      const [value, end] = readString(
        src,
        i + prefix[1].length,
        letters.includes('r')
      );
      tokens.push({
        kind: 'str',
        text: src.slice(i, end),
        value: { kind: 'str', value }
      });
      i = end;
      continue;
    }
    const num = NUMBER.exec(rest);
    if (num && (/\d/.test(ch) || (ch === '.' && /\d/.test(src[i + 1] ?? '')))) {
      tokens.push(numberToken(num[0]));
      i += num[0].length;
      continue;
    }
    const name = NAME.exec(rest);
    if (name) {
      tokens.push({ kind: 'name', text: name[0] });
      i += name[0].length;
      continue;
    }
    const op = OPERATORS.find(o => rest.startsWith(o));
    if (op === undefined) {
      throw new PySyntaxError(`invalid character '${ch}'`);
    }
    tokens.push({ kind: 'op', text: op });
    i += op.length;
  }
  tokens.push({ kind: 'end', text: '' });
  return tokens;
}

/** Binary operators by precedence (higher binds tighter), as in Python's grammar. */
const BINARY: Record<string, number> = {
  '<': 3,
  '>': 3,
  '==': 3,
  '>=': 3,
  '<=': 3,
  '!=': 3,
  '|': 4,
  '^': 5,
  '&': 6,
  '<<': 7,
  '>>': 7,
  '+': 8,
  '-': 8,
  '*': 9,
  '/': 9,
  '//': 9,
  '%': 9,
  '@': 9
};
const UNARY_PRECEDENCE = 10;
const POWER_PRECEDENCE = 11;
const KEYWORDS = new Set([
  'and',
  'as',
  'assert',
  'async',
  'await',
  'break',
  'class',
  'continue',
  'def',
  'del',
  'elif',
  'else',
  'except',
  'finally',
  'for',
  'from',
  'global',
  'if',
  'import',
  'in',
  'is',
  'lambda',
  'nonlocal',
  'not',
  'or',
  'pass',
  'raise',
  'return',
  'try',
  'while',
  'with',
  'yield'
]);

class Parser {
  private pos = 0;

  constructor(private readonly tokens: IToken[]) {}

  parseAll(): PyNode {
    const node = this.expressionList();
    if (this.peek().kind !== 'end') {
      throw new PySyntaxError(`unexpected '${this.peek().text}'`);
    }
    return node;
  }

  private peek(): IToken {
    return this.tokens[this.pos];
  }

  private next(): IToken {
    return this.tokens[this.pos++];
  }

  private isOp(text: string): boolean {
    const t = this.peek();
    return t.kind === 'op' && t.text === text;
  }

  private expect(text: string): void {
    if (!this.isOp(text)) {
      throw new PySyntaxError(`expected '${text}'`);
    }
    this.pos += 1;
  }

  /** `a, b` at the top level is a tuple, as in `ast.parse(text, mode="eval")`. */
  private expressionList(): PyNode {
    const first = this.expression();
    if (!this.isOp(',')) {
      return first;
    }
    const elts = [first];
    while (this.isOp(',')) {
      this.pos += 1;
      if (this.startsExpression()) {
        elts.push(this.expression());
      }
    }
    return { type: 'tuple', elts };
  }

  private startsExpression(): boolean {
    const t = this.peek();
    if (t.kind === 'num' || t.kind === 'str') {
      return true;
    }
    if (t.kind === 'name') {
      return !KEYWORDS.has(t.text);
    }
    return t.kind === 'op' && ['(', '[', '{', '-', '+', '~'].includes(t.text);
  }

  private expression(minPrecedence = 0): PyNode {
    let left = this.unary();
    for (;;) {
      const t = this.peek();
      const precedence = t.kind === 'op' ? BINARY[t.text] : undefined;
      if (precedence === undefined || precedence < minPrecedence) {
        return left;
      }
      this.pos += 1;
      const right = this.expression(precedence + 1);
      left = { type: 'binop', op: t.text, left, right };
    }
  }

  private unary(): PyNode {
    const t = this.peek();
    if (
      t.kind === 'op' &&
      (t.text === '-' || t.text === '+' || t.text === '~')
    ) {
      this.pos += 1;
      return { type: 'unary', op: t.text, operand: this.unary() };
    }
    return this.power();
  }

  private power(): PyNode {
    const base = this.postfix();
    if (this.isOp('**')) {
      this.pos += 1;
      return { type: 'binop', op: '**', left: base, right: this.unary() };
    }
    return base;
  }

  private postfix(): PyNode {
    let node = this.atom();
    for (;;) {
      if (this.isOp('(')) {
        this.pos += 1;
        node = this.call(node);
      } else if (this.isOp('.')) {
        this.pos += 1;
        const name = this.next();
        if (name.kind !== 'name') {
          throw new PySyntaxError('expected a name after .');
        }
        node = { type: 'attr', value: node, attr: name.text };
      } else if (this.isOp('[')) {
        this.pos += 1;
        const index = this.expressionList();
        this.expect(']');
        node = { type: 'subscript', value: node, index };
      } else {
        return node;
      }
    }
  }

  private call(func: PyNode): PyNode {
    const args: PyNode[] = [];
    const keywords: IKeyword[] = [];
    while (!this.isOp(')')) {
      if (this.isOp('*')) {
        this.pos += 1;
        args.push({ type: 'starred', value: this.expression() });
      } else if (
        this.peek().kind === 'name' &&
        this.tokens[this.pos + 1].kind === 'op' &&
        this.tokens[this.pos + 1].text === '='
      ) {
        const arg = this.next().text;
        this.pos += 1;
        keywords.push({ arg, value: this.expression() });
      } else {
        if (keywords.length) {
          throw new PySyntaxError(
            'positional argument follows keyword argument'
          );
        }
        args.push(this.expression());
      }
      if (!this.isOp(',')) {
        break;
      }
      this.pos += 1;
    }
    this.expect(')');
    return { type: 'call', func, args, keywords };
  }

  private atom(): PyNode {
    const t = this.next();
    if (t.kind === 'num') {
      return { type: 'const', value: t.value as PyValue };
    }
    if (t.kind === 'str') {
      let value = (t.value as { value: string }).value;
      while (this.peek().kind === 'str') {
        value += (this.next().value as { value: string }).value; // "a" "b" is "ab"
      }
      return { type: 'const', value: { kind: 'str', value } };
    }
    if (t.kind === 'name') {
      if (t.text === 'None') {
        return { type: 'const', value: { kind: 'none' } };
      }
      if (t.text === 'True' || t.text === 'False') {
        return {
          type: 'const',
          value: { kind: 'bool', value: t.text === 'True' }
        };
      }
      if (KEYWORDS.has(t.text)) {
        throw new PySyntaxError(`unexpected keyword '${t.text}'`);
      }
      return { type: 'name', id: t.text };
    }
    if (t.kind === 'op' && t.text === '(') {
      if (this.isOp(')')) {
        this.pos += 1;
        return { type: 'tuple', elts: [] };
      }
      const inner = this.expressionList();
      this.expect(')');
      return inner;
    }
    if (t.kind === 'op' && t.text === '[') {
      return { type: 'list', elts: this.sequence(']') };
    }
    if (t.kind === 'op' && t.text === '{') {
      return this.braces();
    }
    throw new PySyntaxError(
      t.kind === 'end' ? 'unexpected end' : `unexpected '${t.text}'`
    );
  }

  private sequence(close: string): PyNode[] {
    const elts: PyNode[] = [];
    while (!this.isOp(close)) {
      elts.push(this.expression());
      if (!this.isOp(',')) {
        break;
      }
      this.pos += 1;
    }
    this.expect(close);
    return elts;
  }

  private braces(): PyNode {
    if (this.isOp('}')) {
      this.pos += 1;
      return { type: 'dict', keys: [], values: [] };
    }
    const first = this.expression();
    if (!this.isOp(':')) {
      const rest = this.isOp(',')
        ? (this.pos++, this.sequence('}'))
        : (this.expect('}'), []);
      return { type: 'set', elts: [first, ...rest] };
    }
    const keys = [first];
    const values: PyNode[] = [];
    for (;;) {
      this.expect(':');
      values.push(this.expression());
      if (!this.isOp(',')) {
        break;
      }
      this.pos += 1;
      if (this.isOp('}')) {
        break;
      }
      keys.push(this.expression());
    }
    this.expect('}');
    return { type: 'dict', keys, values };
  }
}

/** Parse one expression as `ast.parse(text, mode="eval")` would. */
export function parseExpression(text: string): PyNode {
  return new Parser(tokenize(text)).parseAll();
}

/** Evaluate a node as `ast.literal_eval` does; throws NotALiteral where it raises ValueError. */
export function literalEval(node: PyNode): PyValue {
  switch (node.type) {
    case 'const':
      return node.value;
    case 'list':
    case 'tuple':
    case 'set':
      return { kind: node.type, items: node.elts.map(literalEval) };
    case 'dict':
      return {
        kind: 'dict',
        entries: node.keys.map((k, i) => [
          literalEval(k),
          literalEval(node.values[i])
        ])
      };
    case 'call':
      if (
        node.func.type === 'name' &&
        node.func.id === 'set' &&
        !node.args.length &&
        !node.keywords.length
      ) {
        return { kind: 'set', items: [] };
      }
      throw new NotALiteral(node);
    case 'unary': {
      const operand = node.operand;
      if ((node.op === '-' || node.op === '+') && operand.type === 'const') {
        const v = operand.value;
        if (v.kind === 'int') {
          return { kind: 'int', value: node.op === '-' ? -v.value : v.value };
        }
        if (v.kind === 'float') {
          return { kind: 'float', value: node.op === '-' ? -v.value : v.value };
        }
      }
      throw new NotALiteral(node);
    }
    default:
      throw new NotALiteral(node);
  }
}

/** Python's `repr(float)`: the shortest digits that round-trip, in Python's layout. */
export function floatRepr(x: number): string {
  if (Number.isNaN(x)) {
    return 'nan';
  }
  if (!Number.isFinite(x)) {
    return x > 0 ? 'inf' : '-inf';
  }
  if (x === 0) {
    return Object.is(x, -0) ? '-0.0' : '0.0';
  }
  const sign = x < 0 ? '-' : '';
  const [mantissa, exponent] = Math.abs(x).toExponential().split('e');
  const exp = parseInt(exponent, 10);
  const digits = mantissa.replace('.', '');
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const e = `${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
    return `${sign}${m}e${e}`;
  }
  if (exp < 0) {
    return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  }
  if (digits.length <= exp + 1) {
    return `${sign}${digits}${'0'.repeat(exp + 1 - digits.length)}.0`;
  }
  return `${sign}${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
}

/** Python's `repr(str)`. */
export function strRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const code = ch.codePointAt(0) as number;
    if (ch === quote || ch === '\\') {
      out += `\\${ch}`;
    } else if (ch === '\n') {
      out += '\\n';
    } else if (ch === '\r') {
      out += '\\r';
    } else if (ch === '\t') {
      out += '\\t';
    } else if (code < 0x20 || (code >= 0x7f && code < 0xa0)) {
      out += `\\x${code.toString(16).padStart(2, '0')}`;
    } else {
      out += ch;
    }
  }
  return out + quote;
}

/** Python's `repr()` of a literal value. */
export function repr(v: PyValue): string {
  switch (v.kind) {
    case 'int':
      return v.value.toString();
    case 'float':
      return floatRepr(v.value);
    case 'str':
      return strRepr(v.value);
    case 'bool':
      return v.value ? 'True' : 'False';
    case 'none':
      return 'None';
    case 'list':
      return `[${v.items.map(repr).join(', ')}]`;
    case 'tuple':
      return v.items.length === 1
        ? `(${repr(v.items[0])},)`
        : `(${v.items.map(repr).join(', ')})`;
    case 'set':
      return v.items.length ? `{${v.items.map(repr).join(', ')}}` : 'set()';
    case 'dict':
      return `{${v.entries.map(([k, x]) => `${repr(k)}: ${repr(x)}`).join(', ')}}`;
  }
}

/** Python's `str()` of a value (differs from repr only for strings). */
export function str(v: PyValue): string {
  return v.kind === 'str' ? v.value : repr(v);
}

function precedence(node: PyNode): number {
  if (node.type === 'binop') {
    return node.op === '**' ? POWER_PRECEDENCE : BINARY[node.op];
  }
  if (node.type === 'unary') {
    return UNARY_PRECEDENCE;
  }
  return node.type === 'tuple' ? 0 : 100;
}

function wrap(node: PyNode, min: number): string {
  const text = unparse(node);
  return precedence(node) < min ? `(${text})` : text;
}

/** Python's `ast.unparse()` for the nodes this reader builds. */
export function unparse(node: PyNode): string {
  switch (node.type) {
    case 'const':
      return node.value.kind === 'float' && !Number.isFinite(node.value.value)
        ? '1e309'
        : repr(node.value);
    case 'name':
      return node.id;
    case 'unary':
      return `${node.op}${wrap(node.operand, UNARY_PRECEDENCE)}`;
    case 'binop': {
      const p = precedence(node);
      const rightAssoc = node.op === '**';
      return `${wrap(node.left, rightAssoc ? p + 1 : p)} ${node.op} ${wrap(node.right, rightAssoc ? p : p + 1)}`;
    }
    case 'call': {
      const parts = [
        ...node.args.map(a => wrap(a, 1)),
        ...node.keywords.map(k => `${k.arg}=${wrap(k.value, 1)}`)
      ];
      return `${wrap(node.func, 100)}(${parts.join(', ')})`;
    }
    case 'starred':
      return `*${wrap(node.value, 1)}`;
    case 'attr':
      return `${wrap(node.value, 100)}.${node.attr}`;
    case 'subscript':
      return `${wrap(node.value, 100)}[${node.index.type === 'tuple' ? node.index.elts.map(unparse).join(', ') : unparse(node.index)}]`;
    case 'list':
      return `[${node.elts.map(e => wrap(e, 1)).join(', ')}]`;
    case 'tuple':
      return node.elts.length === 1
        ? `(${wrap(node.elts[0], 1)},)`
        : `(${node.elts.map(e => wrap(e, 1)).join(', ')})`;
    case 'set':
      return `{${node.elts.map(e => wrap(e, 1)).join(', ')}}`;
    case 'dict':
      return `{${node.keys.map((k, i) => `${wrap(k, 1)}: ${wrap(node.values[i], 1)}`).join(', ')}}`;
  }
}
