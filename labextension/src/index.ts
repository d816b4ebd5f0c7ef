/**
 * nbtune's JupyterLab extension: the "insert tuning template" command and toolbar button,
 * `# tune:` annotation marks with tooltips in `%%tune` cells, and the Tuning side panel.
 */

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, ToolbarButton } from '@jupyterlab/apputils';
import { CodeEditor } from '@jupyterlab/codeeditor';
import {
  EditorExtensionRegistry,
  IEditorExtensionRegistry
} from '@jupyterlab/codemirror';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';

// The editor extension, the kernel links and the panel are all needed at activation.
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { annotationExtension } from './decorations';
import { tuneIcon } from './icon';
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { Links, NbtuneLink } from './link';
// eslint-disable-next-line jupyter/prefer-lazy-imports
import { PANEL_ID, TuningPanel } from './panel';

/** Command ids. */
export namespace CommandIDs {
  export const insertTemplate = 'nbtune:insert-template';
  export const showPanel = 'nbtune:show-panel';
}

/** The notebook panel whose cells include this editor model, if any. */
function notebookOf(
  tracker: INotebookTracker,
  model: CodeEditor.IModel
): NotebookPanel | null {
  return (
    tracker.find(panel => {
      const cells = panel.content.model?.cells;
      if (!cells) {
        return false;
      }
      for (let i = 0; i < cells.length; i++) {
        if (cells.get(i) === model) {
          return true;
        }
      }
      return false;
    }) ?? null
  );
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbtune:plugin',
  description:
    'nbtune: tuning templates, `# tune:` annotation marks and a Tuning panel.',
  autoStart: true,
  requires: [INotebookTracker, IEditorExtensionRegistry],
  optional: [ICommandPalette, ILayoutRestorer, ITranslator],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    editorExtensions: IEditorExtensionRegistry,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    translator: ITranslator | null
  ) => {
    const trans = (translator ?? nullTranslator).load('nbtune');
    const links = new Links();
    const linkOf = (panel: NotebookPanel): NbtuneLink =>
      links.get(panel.sessionContext);

    app.commands.addCommand(CommandIDs.insertTemplate, {
      label: trans.__('nbtune: insert tuning template'),
      caption: trans.__(
        'Insert a ready %1 cell from the kernel’s nbtune',
        '%%tune'
      ),
      icon: tuneIcon,
      describedBy: { args: { type: 'object', properties: {} } },
      isEnabled: () => tracker.currentWidget !== null,
      execute: async () => {
        const panel = tracker.currentWidget;
        if (panel) {
          const { insertTemplate } = await import('./templates');
          await insertTemplate(panel, linkOf(panel), trans);
        }
      }
    });

    const tuningPanel = new TuningPanel(
      app.commands,
      CommandIDs.insertTemplate,
      trans
    );
    app.shell.add(tuningPanel, 'right', { rank: 700 });
    restorer?.add(tuningPanel, PANEL_ID);
    app.commands.addCommand(CommandIDs.showPanel, {
      label: trans.__('nbtune: show tuning panel'),
      caption: trans.__('The searches of the current notebook’s kernel'),
      describedBy: { args: { type: 'object', properties: {} } },
      execute: () => app.shell.activateById(PANEL_ID)
    });

    const category = trans.__('nbtune');
    palette?.addItem({ command: CommandIDs.insertTemplate, category });
    palette?.addItem({ command: CommandIDs.showPanel, category });

    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (panel: NotebookPanel) => {
        const button = new ToolbarButton({
          icon: tuneIcon,
          className: 'nbtune-template-button',
          tooltip: trans.__('nbtune: insert tuning template'),
          onClick: () => void app.commands.execute(CommandIDs.insertTemplate)
        });
        panel.toolbar.insertItem(10, 'nbtuneTemplate', button);
        linkOf(panel); // start watching the kernel for nbtune
        return button;
      }
    });

    const follow = (): void => {
      const panel = tracker.currentWidget;
      tuningPanel.follow(
        panel ? linkOf(panel) : null,
        panel?.title.label ?? ''
      );
    };
    tracker.currentChanged.connect(follow);
    follow();

    editorExtensions.addExtension({
      name: 'nbtune:annotations',
      factory: options =>
        EditorExtensionRegistry.createImmutableExtension(
          annotationExtension(
            options.model,
            model => {
              const panel = notebookOf(tracker, model);
              return panel ? linkOf(panel) : null;
            },
            trans
          )
        )
    });
  }
};

export default plugin;
