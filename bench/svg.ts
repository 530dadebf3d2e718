// Horizontal bar charts as standalone SVG, for docs/bench-*.svg. The chart paints its own
// background, so it reads the same in GitHub's light and dark themes.

/** How a bar is coloured. */
/** `'ours2'`: a second cachegraph variant next to the first. */
export type Tone = 'ours' | 'ours2' | 'peer' | 'floor' | 'pass' | 'miss';

export interface Bar {
  readonly label: string;
  /** Length of the bar, in the chart's unit. */
  readonly value: number;
  /** Printed after the bar (e.g. `'12.3 M ops/s'`). */
  readonly text: string;
  /** Printed after `text`, quieter (e.g. `'1.05× Map'`). */
  readonly note?: string;
  readonly tone: Tone;
}

export interface BarGroup {
  readonly title: string;
  readonly bars: readonly Bar[];
}

export interface Chart {
  readonly title: string;
  readonly subtitle?: string;
  readonly groups: readonly BarGroup[];
  /**
   * `'group'`: each group's longest bar spans the width (compare within a group only);
   * `'shared'`: one scale for the whole chart.
   */
  readonly scale: 'group' | 'shared';
  /** A dashed vertical line at this value, labelled (e.g. a target). */
  readonly reference?: { readonly value: number; readonly label: string };
  /** Bars longer than this are cut here and marked as cut; their text still says the value. */
  readonly clip?: number;
}

const WIDTH = 820;
const BAR = 16;
const GAP = 6;
const PAD = 16;
const FONT = 'system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif';
const COLORS: Record<Tone, string> = { ours: '#2563eb', ours2: '#60a5fa', peer: '#94a3b8', floor: '#475569', pass: '#16a34a', miss: '#dc2626' };
const INK = '#111827';
const QUIET = '#4b5563';

/** Rough width of `text` at `size` px: enough to lay out labels without measuring fonts. */
const textWidth = (text: string, size: number): number => text.length * size * 0.58;

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function textAt(x: number, y: number, text: string, attributes: string): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attributes}>${escape(text)}</text>`;
}

/**
 * A horizontal bar chart: one row per bar with its label, bar, value and note, bars grouped
 * under group titles.
 *
 * @example
 * barChart({ title: 'get', scale: 'group', groups: [{ title: '10 000 keys', bars: [{ label: 'Map', value: 40e6, text: '40 M ops/s', tone: 'floor' }] }] });
 */
export function barChart(chart: Chart): string {
  const labels = chart.groups.flatMap((group) => group.bars.map((bar) => bar.label));
  const labelWidth = Math.ceil(Math.max(80, ...labels.map((label) => textWidth(label, 12)))) + 12;
  const x0 = PAD + labelWidth;
  // Room for the value and note after the longest bar.
  const textRoom = Math.max(...chart.groups.flatMap((group) => group.bars.map((bar) => textWidth(bar.text, 12) + textWidth(bar.note ?? '', 12) + 24)));
  const span = Math.max(120, WIDTH - x0 - PAD - textRoom);
  const limit = (value: number): number => Math.min(value, chart.clip ?? Number.POSITIVE_INFINITY);
  const sharedMax = Math.max(...chart.groups.flatMap((group) => group.bars.map((bar) => limit(bar.value))), chart.reference?.value ?? 0);

  const body: string[] = [];
  let y = PAD + 18;
  body.push(textAt(PAD, y, chart.title, `font-size="15" font-weight="600" fill="${INK}"`));
  if (chart.subtitle !== undefined) {
    y += 18;
    body.push(textAt(PAD, y, chart.subtitle, `font-size="12" fill="${QUIET}"`));
  }
  const top = y + 8;
  // The reference line, where there is one: the text of a bar starts right of it.
  const referenceX = chart.reference !== undefined && sharedMax > 0 && chart.scale === 'shared' ? x0 + (chart.reference.value / sharedMax) * span : undefined;
  for (const group of chart.groups) {
    y += 26;
    body.push(textAt(PAD, y, group.title, `font-size="13" font-weight="600" fill="${INK}"`));
    y += 8;
    const max = chart.scale === 'shared' ? sharedMax : Math.max(...group.bars.map((bar) => limit(bar.value)));
    for (const bar of group.bars) {
      const cut = chart.clip !== undefined && bar.value > chart.clip;
      const length = max > 0 && Number.isFinite(bar.value) ? Math.max(1, (limit(bar.value) / max) * span) : 0;
      const middle = y + BAR / 2 + 4;
      body.push(textAt(x0 - 8, middle, bar.label, `font-size="12" text-anchor="end" fill="${INK}"`));
      body.push(`<rect x="${x0}" y="${y}" width="${length.toFixed(1)}" height="${BAR}" rx="2" fill="${COLORS[bar.tone]}"/>`);
      if (cut) body.push(`<path d="M${(x0 + length - 6).toFixed(1)} ${y} l6 ${BAR / 2} l-6 ${BAR / 2} z" fill="#ffffff" opacity="0.8"/>`);
      const after = Math.max(x0 + length, referenceX ?? 0) + 6;
      body.push(textAt(after, middle, bar.text, `font-size="12" fill="${INK}"`));
      if (bar.note !== undefined) body.push(textAt(after + textWidth(bar.text, 12) + 8, middle, bar.note, `font-size="12" fill="${QUIET}"`));
      y += BAR + GAP;
    }
  }
  if (chart.reference !== undefined && referenceX !== undefined) {
    body.push(`<line x1="${referenceX.toFixed(1)}" y1="${top + 14}" x2="${referenceX.toFixed(1)}" y2="${y}" stroke="${INK}" stroke-width="1" stroke-dasharray="4 3"/>`);
    body.push(textAt(referenceX, top + 10, chart.reference.label, `font-size="11" text-anchor="middle" fill="${INK}"`));
  }
  const height = y + PAD;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" role="img" aria-label="${escape(chart.title)}" font-family="${FONT}">`,
    `<title>${escape(chart.title)}</title>`,
    `<rect width="100%" height="100%" fill="#ffffff" rx="6"/>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}
