import { readFileSync } from 'fs';
import { join } from 'path';
import { describe, expect, it } from 'vitest';

import {
  annotationMessage,
  IAnnotation,
  isTuneCell,
  readCell
} from '../src/annotations';
import { floatRepr, strRepr } from '../src/pyexpr';

interface ICase {
  about?: string;
  cell: string;
  read: Partial<IAnnotation>[];
}

const TABLE = join(__dirname, '..', '..', 'tests', 'annotation_cases.json');
const CASES: ICase[] = JSON.parse(readFileSync(TABLE, 'utf-8')).cases;

function shown(a: IAnnotation): Partial<IAnnotation> {
  const out: Partial<IAnnotation> = { line: a.line, name: a.name };
  if (a.reading !== undefined) {
    out.reading = a.reading;
  }
  if (a.error !== undefined) {
    out.error = a.error;
  }
  return out;
}

describe('the shared table of annotation cases', () => {
  it('has cases to read', () => {
    expect(CASES.length).toBeGreaterThan(50);
  });

  it.each(CASES.map(c => [c.cell.split('\n').pop() as string, c] as const))(
    'reads %s as nbtune does',
    (_title, c) => {
      expect(readCell(c.cell).map(shown)).toEqual(c.read);
    }
  );
});

describe('reading a cell for the editor', () => {
  it('knows a %%tune cell by its first line only', () => {
    expect(isTuneCell('%%tune --max-evals 4\nx = 1')).toBe(true);
    expect(isTuneCell('%%tune')).toBe(true);
    expect(isTuneCell('%%tuner\nx = 1')).toBe(false);
    expect(isTuneCell('x = 1\n%%tune')).toBe(false);
  });

  it('places each annotation at its comment', () => {
    const cell =
      '%%tune\nlr = 1e-3    # tune: loguniform(1e-5, 1e-1)\nloss = lr';
    const [a] = readCell(cell);
    const line = cell.split('\n')[a.line - 1];
    expect(line.slice(a.column, a.column + a.length)).toBe(
      '# tune: loguniform(1e-5, 1e-1)'
    );
  });

  it('words an error as the magic does, with its line', () => {
    const [a] = readCell('%%tune\nx = 1\ny = 2  # tune: uniform(2, 1)');
    expect(annotationMessage(a)).toBe(
      'line 3: uniform(): lo must be less than hi, got 2 >= 1'
    );
  });

  it('still reads the annotations of a cell that is not finished yet', () => {
    const got = readCell(
      '%%tune\nlr = 0.1  # tune: loguniform(1e-4, 1)\nmodel = build(\n'
    );
    expect(got.map(a => [a.line, a.reading])).toEqual([
      [2, 'lr: loguniform(lo=0.0001, hi=1)']
    ]);
  });
});

describe('Python reprs', () => {
  it.each([
    [0.1, '0.1'],
    [1e-5, '1e-05'],
    [0.0001, '0.0001'],
    [1e16, '1e+16'],
    [1e15, '1000000000000000.0'],
    [123456789.125, '123456789.125'],
    [-2.5e-7, '-2.5e-07'],
    [5, '5.0'],
    [Infinity, 'inf']
  ])('shows the float %s as %s', (x, want) => {
    expect(floatRepr(x)).toBe(want);
  });

  it.each([
    ['plain', "'plain'"],
    ["it's", '"it\'s"'],
    ['both \' and "', "'both \\' and \"'"],
    ['tab\there', "'tab\\there'"]
  ])('shows the string %s as Python does', (s, want) => {
    expect(strRepr(s)).toBe(want);
  });
});
