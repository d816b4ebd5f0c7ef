/**
 * "nbtune: insert tuning template": ask the kernel's nbtune for its templates, let the
 * user pick one, and insert it as a new code cell below the active one.
 */

import { Dialog, showDialog } from '@jupyterlab/apputils';
import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { ITemplate, NbtuneLink } from './link';

const PREFERRED = ['fashion_mnist', 'quickstart'];
const CONNECT_TIMEOUT = 10000; // ms
const LOAD_TIMEOUT = 120000; // ms: `%load_ext nbtune` imports hyperopt and friends

/** The dialog body: a list of the templates and a preview of the chosen one. */
class TemplateChooser extends Widget implements Dialog.IBodyWidget<ITemplate> {
  constructor(
    private readonly templates: ITemplate[],
    trans: TranslationBundle
  ) {
    super();
    this.addClass('nbtune-template-chooser');
    const label = document.createElement('label');
    label.textContent = trans.__('Template');
    this.select.className = 'jp-mod-styled nbtune-template-select';
    for (const t of templates) {
      const option = document.createElement('option');
      option.value = t.name;
      option.textContent = t.description
        ? `${t.name}: ${t.description}`
        : t.name;
      this.select.append(option);
    }
    const names = templates.map(t => t.name);
    this.select.value = PREFERRED.find(n => names.includes(n)) ?? names[0];
    this.preview.className = 'nbtune-template-preview';
    this.select.onchange = () => this.showPreview();
    label.append(this.select);
    this.node.append(label, this.preview);
    this.showPreview();
  }

  getValue(): ITemplate {
    return (
      this.templates.find(t => t.name === this.select.value) ??
      this.templates[0]
    );
  }

  private showPreview(): void {
    this.preview.textContent = this.getValue().text;
  }

  private readonly select = document.createElement('select');
  private readonly preview = document.createElement('pre');
}

/** Offer to load nbtune with a `%load_ext nbtune` cell above the active one; true once loaded. */
async function offerToLoad(
  panel: NotebookPanel,
  link: NbtuneLink,
  trans: TranslationBundle
): Promise<boolean> {
  const answer = await showDialog({
    title: trans.__('nbtune is not loaded in this kernel'),
    body: trans.__(
      'The tuning templates come from nbtune in the notebook’s kernel. Add and run a %1 cell now?',
      '“%load_ext nbtune”'
    ),
    buttons: [
      Dialog.cancelButton(),
      Dialog.okButton({ label: trans.__('Load nbtune') })
    ]
  });
  if (!answer.button.accept) {
    return false;
  }
  const notebook = panel.content;
  const index = Math.max(0, notebook.activeCellIndex);
  notebook.model?.sharedModel.insertCell(index, {
    cell_type: 'code',
    source: '%load_ext nbtune'
  });
  notebook.activeCellIndex = index;
  await NotebookActions.run(notebook, panel.sessionContext);
  notebook.activeCellIndex = index + 1;
  link.connect();
  return link.whenReady(LOAD_TIMEOUT);
}

/** Insert `text` as a code cell below the active cell and make it active. */
export function insertBelow(panel: NotebookPanel, text: string): void {
  const notebook = panel.content;
  const index = notebook.activeCellIndex + 1;
  notebook.model?.sharedModel.insertCell(index, {
    cell_type: 'code',
    source: text.replace(/\n+$/, '')
  });
  notebook.activeCellIndex = index;
  notebook.deselectAll();
}

/** The command: choose a template from the kernel's nbtune and insert it. */
export async function insertTemplate(
  panel: NotebookPanel,
  link: NbtuneLink,
  trans: TranslationBundle
): Promise<void> {
  await panel.sessionContext.ready;
  link.connect();
  let ready = await link.whenSettled(CONNECT_TIMEOUT);
  if (!ready && link.state === 'no-kernel') {
    await showDialog({
      title: trans.__('No kernel'),
      body: trans.__('Start a Python kernel for this notebook to use nbtune.'),
      buttons: [Dialog.okButton()]
    });
    return;
  }
  if (!ready) {
    ready = await offerToLoad(panel, link, trans);
  }
  if (!ready) {
    return;
  }
  const { templates } = await link.request<{ templates: ITemplate[] }>(
    'templates'
  );
  if (!templates.length) {
    await showDialog({
      title: trans.__('No tuning templates'),
      body: trans.__('The kernel’s nbtune has no templates.'),
      buttons: [Dialog.okButton()]
    });
    return;
  }
  const answer = await showDialog({
    title: trans.__('Insert a tuning template'),
    body: new TemplateChooser(templates, trans),
    buttons: [
      Dialog.cancelButton(),
      Dialog.okButton({ label: trans.__('Insert') })
    ]
  });
  if (answer.button.accept && answer.value) {
    insertBelow(panel, answer.value.text);
  }
}
