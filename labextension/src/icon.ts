import { LabIcon } from '@jupyterlab/ui-components';

// Material Design "tune" icon (Apache-2.0), coloured like JupyterLab's own icons.
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M3 17v2h6v-2H3zM3 5v2h10V5H3zm10 16v-2h8v-2h-8v-2h-2v6h2zM7 9v2H3v2h4v2h2V9H7zm14 4v-2H11v2h10zm-6-4h2V7h4V5h-4V3h-2v6z"/>
  </g>
</svg>`;

/** nbtune's icon: the side panel tab and the toolbar button. */
export const tuneIcon = new LabIcon({ name: 'nbtune:tune', svgstr: svg });
