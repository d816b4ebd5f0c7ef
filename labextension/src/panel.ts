/**
 * The "Tuning" side panel: the searches of the current notebook's kernel session, updated
 * live from nbtune's pushes, with a helpful empty state when nbtune is not loaded.
 */

import { TranslationBundle } from '@jupyterlab/translation';
import { CommandRegistry } from '@lumino/commands';
import { Widget } from '@lumino/widgets';

import { tuneIcon } from './icon';
import { ISearch, NbtuneLink } from './link';

/** The id of the panel in the shell. */
export const PANEL_ID = 'nbtune-tuning-panel';

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  node.textContent = text;
  return node;
}

function formatNumber(value: number): string {
  if (value !== 0 && (Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3)) {
    return value.toExponential(3);
  }
  return String(Number(value.toPrecision(4)));
}

function formatValue(value: unknown): string {
  return typeof value === 'number'
    ? formatNumber(value)
    : JSON.stringify(value);
}

function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

/** running, completed, failed (no trial succeeded), or why the search stopped. */
function displayStatus(search: ISearch): string {
  if (!search.finished) {
    return 'running';
  }
  const broken = ['completed', 'failing', 'max-failures', 'error'];
  return search.ok === 0 && broken.includes(search.status)
    ? 'failed'
    : search.status;
}

/** One search, drawn once and then updated in place. */
class SearchCard {
  constructor(private readonly trans: TranslationBundle) {
    this.node.append(
      this.header,
      this.progress,
      this.counts,
      this.best,
      this.params,
      this.footer
    );
    this.header.append(this.title, this.badge);
  }

  readonly node = el('li', 'nbtune-search');

  update(search: ISearch): void {
    const status = displayStatus(search);
    this.node.dataset.status = status;
    this.node.dataset.searchId = String(search.id);
    this.title.textContent = search.name;
    const trans = this.trans;
    this.title.title = trans.__(
      'bound to %1 · %2 backend, %3 at a time',
      search.out,
      search.backend,
      search.parallelism
    );
    this.badge.textContent = status;
    this.badge.className = `nbtune-search-status nbtune-search-status-${status}`;
    this.progress.max = Math.max(1, search.total);
    this.progress.value = search.done;
    const parts = [
      trans.__('%1/%2 trials', search.done, search.total),
      trans.__('ok %1', search.ok)
    ];
    if (search.pruned) {
      parts.push(trans.__('pruned %1', search.pruned));
    }
    if (search.failed) {
      parts.push(trans.__('failed %1', search.failed));
    }
    if (search.cancelled) {
      parts.push(trans.__('cancelled %1', search.cancelled));
    }
    if (search.running) {
      parts.push(trans.__('running %1', search.running));
    }
    parts.push(formatDuration(search.elapsed));
    this.counts.textContent = parts.join(' · ');
    this.best.textContent =
      search.best === null
        ? trans.__('no successful trial yet for %1', search.metric)
        : trans.__(
            'best %1 = %2 (%3)',
            search.metric,
            formatNumber(search.best),
            search.mode
          );
    this.params.textContent = Object.entries(search.best_params)
      .map(([k, v]) => `${k}=${formatValue(v)}`)
      .join(', ');
    const url = search.mlflow_url ?? search.best_mlflow_url;
    this.footer.replaceChildren();
    if (url) {
      const link = el(
        'a',
        'nbtune-search-mlflow',
        search.mlflow_url
          ? trans.__('MLflow run')
          : trans.__('MLflow: best trial')
      );
      link.href = url;
      link.target = '_blank';
      link.rel = 'noopener noreferrer';
      this.footer.append(link);
    }
  }

  private readonly header = el('div', 'nbtune-search-header');
  private readonly title = el('span', 'nbtune-search-name');
  private readonly badge = el('span', 'nbtune-search-status');
  private readonly progress = el('progress', 'nbtune-search-progress');
  private readonly counts = el('div', 'nbtune-search-counts');
  private readonly best = el('div', 'nbtune-search-best');
  private readonly params = el('div', 'nbtune-search-params');
  private readonly footer = el('div', 'nbtune-search-footer');
}

/** The side panel. */
export class TuningPanel extends Widget {
  constructor(
    private readonly commands: CommandRegistry,
    private readonly templateCommand: string,
    private readonly trans: TranslationBundle
  ) {
    super();
    this.id = PANEL_ID;
    this.title.icon = tuneIcon;
    this.title.caption = trans.__('Tuning');
    this.addClass('nbtune-panel');
    this.node.append(
      el('h2', 'nbtune-panel-title', trans.__('Tuning')),
      this.subtitle,
      this.body,
      this.list
    );
    this.render();
  }

  /** Show the searches of this notebook's link (null: no notebook is active). */
  follow(link: NbtuneLink | null, notebookName: string): void {
    if (link === this.link && notebookName === this.notebookName) {
      return;
    }
    this.link?.changed.disconnect(this.render, this);
    this.link = link;
    this.notebookName = notebookName;
    link?.changed.connect(this.render, this);
    this.cards.clear();
    this.list.replaceChildren();
    this.render();
  }

  private render(): void {
    const link = this.link;
    this.subtitle.textContent = link ? this.notebookName : '';
    const searches =
      link?.state === 'ready' ? link.searches.slice().reverse() : [];
    this.node.dataset.state = link?.state ?? 'no-notebook';
    this.body.replaceChildren(...this.emptyState(link, searches.length));
    const shown = new Set<number>();
    searches.forEach((search, index) => {
      let card = this.cards.get(search.id);
      if (card === undefined) {
        card = new SearchCard(this.trans);
        this.cards.set(search.id, card);
      }
      card.update(search);
      shown.add(search.id);
      if (this.list.children[index] !== card.node) {
        this.list.insertBefore(card.node, this.list.children[index] ?? null);
      }
    });
    for (const [id, card] of this.cards) {
      if (!shown.has(id)) {
        card.node.remove();
        this.cards.delete(id);
      }
    }
  }

  private emptyState(link: NbtuneLink | null, count: number): HTMLElement[] {
    const trans = this.trans;
    const note = (text: string): HTMLElement =>
      el('p', 'nbtune-panel-note', text);
    if (link === null) {
      return [
        note(trans.__('Open a notebook to see its tuning searches here.'))
      ];
    }
    switch (link.state) {
      case 'no-kernel':
        return [
          note(trans.__('This notebook has no kernel. Start one to tune.'))
        ];
      case 'connecting':
        return [note(trans.__('Connecting to nbtune in the kernel…'))];
      case 'absent': {
        const button = el(
          'button',
          'jp-Button jp-mod-styled jp-mod-accept nbtune-panel-template',
          trans.__('Insert a tuning template')
        );
        button.onclick = () => void this.commands.execute(this.templateCommand);
        return [
          el(
            'p',
            'nbtune-panel-empty',
            trans.__('nbtune is not loaded in this notebook’s kernel.')
          ),
          note(trans.__('Run this in a cell to load it:')),
          el('pre', 'nbtune-panel-code', '%load_ext nbtune'),
          note(
            trans.__(
              'Then mark tunable values with %1 comments and run a %2 cell: its searches show up here as they run.',
              '“# tune:”',
              '%%tune'
            )
          ),
          button
        ];
      }
      case 'ready':
        return count
          ? []
          : [
              note(
                trans.__(
                  'No searches in this kernel session yet. Run a %1 cell and it shows up here.',
                  '%%tune'
                )
              )
            ];
    }
  }

  private link: NbtuneLink | null = null;
  private notebookName = '';
  private readonly cards = new Map<number, SearchCard>();
  private readonly subtitle = el('div', 'nbtune-panel-subtitle');
  private readonly body = el('div', 'nbtune-panel-body');
  private readonly list = el('ol', 'nbtune-search-list');
}
