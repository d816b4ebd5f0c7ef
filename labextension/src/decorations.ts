/**
 * CodeMirror side: in a cell that starts with `%%tune`, mark the header and every
 * `# tune:` comment, with a tooltip saying how nbtune reads it. The extension's own reader
 * answers at once; when nbtune is loaded in the kernel its reading replaces that one.
 */

import { CodeEditor } from '@jupyterlab/codeeditor';
import { TranslationBundle } from '@jupyterlab/translation';
import {
  EditorState,
  Extension,
  Range,
  StateEffect,
  StateField,
  Text
} from '@codemirror/state';
import {
  Decoration,
  DecorationSet,
  EditorView,
  hoverTooltip,
  PluginValue,
  Tooltip,
  ViewPlugin,
  ViewUpdate
} from '@codemirror/view';

import { annotationMessage, IAnnotation, readCell } from './annotations';
import { IKernelReading, NbtuneLink } from './link';

/** Who read the annotations shown. */
type Reader = 'extension' | 'kernel';

interface IPlaced {
  annotation: IAnnotation & { message?: string };
  from: number;
  to: number;
}

interface IReadings {
  by: Reader;
  placed: IPlaced[];
  decorations: DecorationSet;
}

const HEADER = '%%tune';
const KERNEL_DELAY = 300; // ms of quiet typing before the kernel is asked

/** Whether the document is a `%%tune` cell (looks at the first line only: cheap for big files). */
function isTuneDoc(doc: Text): boolean {
  const first = doc.line(1).text;
  return first.startsWith(HEADER) && /^%%tune(\s|$)/.test(first);
}

function place(doc: Text, annotations: IAnnotation[], by: Reader): IReadings {
  const placed: IPlaced[] = [];
  const ranges: Range<Decoration>[] = [];
  if (isTuneDoc(doc)) {
    ranges.push(
      Decoration.mark({ class: 'nbtune-magic' }).range(0, HEADER.length)
    );
  }
  for (const annotation of annotations) {
    if (annotation.line < 1 || annotation.line > doc.lines) {
      continue;
    }
    const line = doc.line(annotation.line);
    const from = line.from + Math.min(annotation.column, line.length);
    const to = Math.min(from + annotation.length, line.to);
    const status = annotation.error === undefined ? 'ok' : 'error';
    placed.push({ annotation, from, to });
    ranges.push(
      Decoration.line({
        class: `nbtune-annotated-line nbtune-annotated-line-${status}`
      }).range(line.from)
    );
    if (to > from) {
      ranges.push(
        Decoration.mark({
          class: `nbtune-annotation nbtune-annotation-${status}`,
          attributes: {
            'data-nbtune-param': annotation.name ?? '',
            'data-nbtune-read-by': by
          }
        }).range(from, to)
      );
    }
  }
  return { by, placed, decorations: Decoration.set(ranges, true) };
}

function readLocally(doc: Text): IReadings {
  return place(
    doc,
    isTuneDoc(doc) ? readCell(doc.toString()) : [],
    'extension'
  );
}

const kernelReading = StateEffect.define<{
  source: string;
  reading: IKernelReading;
}>();

const readings = StateField.define<IReadings>({
  create: (state: EditorState) => readLocally(state.doc),
  update(value, tr) {
    for (const effect of tr.effects) {
      if (
        effect.is(kernelReading) &&
        effect.value.source === tr.state.doc.toString()
      ) {
        return place(tr.state.doc, effect.value.reading.annotations, 'kernel');
      }
    }
    return tr.docChanged ? readLocally(tr.state.doc) : value;
  },
  provide: field => EditorView.decorations.from(field, r => r.decorations)
});

/** Asks the kernel's nbtune for its reading after the cell changes, or once it connects. */
class KernelReader implements PluginValue {
  constructor(
    private readonly view: EditorView,
    private readonly model: CodeEditor.IModel,
    private readonly findLink: (model: CodeEditor.IModel) => NbtuneLink | null
  ) {
    this.schedule();
  }

  update(update: ViewUpdate): void {
    if (update.docChanged) {
      this.schedule();
    }
  }

  destroy(): void {
    this.destroyed = true;
    clearTimeout(this.timer);
    this.link?.changed.disconnect(this.onLinkChanged, this);
  }

  private schedule(): void {
    clearTimeout(this.timer);
    if (isTuneDoc(this.view.state.doc)) {
      this.timer = setTimeout(() => void this.ask(), KERNEL_DELAY);
    }
  }

  private watch(): NbtuneLink | null {
    const link = this.findLink(this.model);
    if (link !== this.link) {
      this.link?.changed.disconnect(this.onLinkChanged, this);
      link?.changed.connect(this.onLinkChanged, this);
      this.link = link;
    }
    return link;
  }

  private onLinkChanged(link: NbtuneLink): void {
    if (
      link.state === 'ready' &&
      this.view.state.field(readings).by !== 'kernel'
    ) {
      this.schedule();
    }
  }

  private async ask(): Promise<void> {
    const link = this.watch();
    if (link === null || link.state !== 'ready' || this.destroyed) {
      return;
    }
    const source = this.view.state.doc.toString();
    let reading: IKernelReading;
    try {
      reading = await link.request<IKernelReading>('annotations', { source });
    } catch {
      return; // the extension's own reading stays
    }
    if (!this.destroyed && source === this.view.state.doc.toString()) {
      this.view.dispatch({ effects: kernelReading.of({ source, reading }) });
    }
  }

  private destroyed = false;
  private link: NbtuneLink | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined = undefined;
}

function tooltip(
  trans: TranslationBundle,
  view: EditorView,
  pos: number
): Tooltip | null {
  const { by, placed } = view.state.field(readings);
  const hit = placed.find(p => p.from <= pos && pos <= p.to);
  if (hit === undefined) {
    return null;
  }
  const a = hit.annotation;
  return {
    pos: hit.from,
    end: hit.to,
    above: true,
    create: () => {
      const dom = document.createElement('div');
      const error = a.error !== undefined;
      dom.className = `nbtune-tooltip nbtune-tooltip-${error ? 'error' : 'ok'}`;
      const text = dom.appendChild(document.createElement('div'));
      text.className = 'nbtune-tooltip-text';
      text.textContent = a.message ?? annotationMessage(a);
      const source = dom.appendChild(document.createElement('div'));
      source.className = 'nbtune-tooltip-source';
      source.textContent =
        by === 'kernel'
          ? trans.__('as read by nbtune in the kernel')
          : trans.__(
              'as read by the nbtune extension (nbtune is not loaded in the kernel yet)'
            );
      return { dom };
    }
  };
}

/** The editor extension for one cell editor. */
export function annotationExtension(
  model: CodeEditor.IModel,
  findLink: (model: CodeEditor.IModel) => NbtuneLink | null,
  trans: TranslationBundle
): Extension {
  return [
    readings,
    ViewPlugin.define(view => new KernelReader(view, model, findLink)),
    hoverTooltip((view, pos) => tooltip(trans, view, pos), { hoverTime: 300 })
  ];
}
