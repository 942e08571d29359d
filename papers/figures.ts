// Plain SVG line charts and Markdown tables for the paper, with no plotting dependency: what
// `npm run paper` draws from the benchmark JSON.

import { assert } from '../engine/assert.ts';

export interface Series {
  readonly name: string;
  readonly points: readonly (readonly [number, number])[];
  readonly dashed?: boolean;
}

export interface Chart {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  readonly xLog?: boolean;
  /** Tick values on x (default: five even steps, or the decades on a log axis). */
  readonly xTicks?: readonly number[];
  readonly yMin?: number;
  readonly yMax?: number;
  /** Vertical marks, e.g. the moment of a kill. */
  readonly marks?: readonly { readonly x: number; readonly label: string }[];
}

export const chartWidth = 720;
export const chartHeight = 420;
const margin = { left: 78, right: 190, top: 40, bottom: 58 };
const palette = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];
/** Bounds on what one chart may carry, so a malformed input fails instead of drawing noise. */
export const seriesMax = palette.length;
export const pointsPerSeriesMax = 10_000;

const escapeXml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** A short label for a tick value: 0.25, 3, 1.2k, 40k. */
export function tickLabel(v: number): string {
  if (v !== 0 && Math.abs(v) >= 1_000) return `${Number((v / 1_000).toFixed(1))}k`;
  if (Math.abs(v) < 1 && v !== 0) return String(Number(v.toPrecision(2)));
  return String(Number(v.toFixed(1)));
}

function niceStep(span: number): number {
  const raw = span / 8;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

/** Renders `chart` as a standalone SVG document. */
export function lineChart(chart: Chart): string {
  assert(chart.series.length > 0 && chart.series.length <= seriesMax, () => `lineChart: ${chart.series.length} series (1..${seriesMax}) in "${chart.title}"`);
  const all = chart.series.flatMap((s) => {
    assert(s.points.length > 0 && s.points.length <= pointsPerSeriesMax, () => `lineChart: series "${s.name}" has ${s.points.length} points`);
    for (const [x, y] of s.points) assert(Number.isFinite(x) && Number.isFinite(y) && (!chart.xLog || x > 0), () => `lineChart: bad point (${x}, ${y}) in "${s.name}"`);
    return s.points;
  });
  const xs = [...all.map((p) => p[0]), ...(chart.marks ?? []).map((m) => m.x)];
  const ys = all.map((p) => p[1]);
  let xMin = Math.min(...xs);
  let xMax = Math.max(...xs);
  if (xMax === xMin) xMax = xMin + 1;
  const yMin = chart.yMin ?? Math.min(0, ...ys);
  let yMax = chart.yMax ?? Math.max(...ys) * 1.08;
  if (yMax <= yMin) yMax = yMin + 1;
  let xTicks = chart.xTicks;
  if (chart.xLog) {
    xMin = 10 ** Math.floor(Math.log10(xMin));
    xMax = 10 ** Math.ceil(Math.log10(xMax));
    xTicks ??= Array.from({ length: Math.round(Math.log10(xMax / xMin)) + 1 }, (_, i) => xMin * 10 ** i);
  } else if (xTicks === undefined) {
    const step = niceStep(xMax - xMin);
    xTicks = Array.from({ length: Math.floor((xMax - xMin) / step + 1e-9) + 1 }, (_, i) => xMin + i * step);
  }
  const yStep = niceStep(yMax - yMin);
  const yTicks = Array.from({ length: Math.floor((yMax - yMin) / yStep + 1e-9) + 1 }, (_, i) => yMin + i * yStep);
  const plotW = chartWidth - margin.left - margin.right;
  const plotH = chartHeight - margin.top - margin.bottom;
  const px = (x: number): number => margin.left + (chart.xLog ? Math.log10(x / xMin) / Math.log10(xMax / xMin) : (x - xMin) / (xMax - xMin)) * plotW;
  const py = (y: number): number => margin.top + plotH - ((y - yMin) / (yMax - yMin)) * plotH;
  const f = (n: number): string => n.toFixed(1);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${chartWidth} ${chartHeight}" width="${chartWidth}" height="${chartHeight}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
  );
  out.push(`<rect width="${chartWidth}" height="${chartHeight}" fill="white"/>`);
  out.push(`<text x="${chartWidth / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(chart.title)}</text>`);
  for (const t of yTicks)
    out.push(
      `<line x1="${margin.left}" x2="${margin.left + plotW}" y1="${f(py(t))}" y2="${f(py(t))}" stroke="#e5e5e5"/><text x="${margin.left - 6}" y="${f(py(t) + 4)}" text-anchor="end">${tickLabel(t)}</text>`,
    );
  for (const t of xTicks)
    if (t >= xMin && t <= xMax)
      out.push(
        `<line x1="${f(px(t))}" x2="${f(px(t))}" y1="${margin.top}" y2="${margin.top + plotH}" stroke="#e5e5e5"/><text x="${f(px(t))}" y="${margin.top + plotH + 16}" text-anchor="middle">${tickLabel(t)}</text>`,
      );
  out.push(`<rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${margin.left + plotW / 2}" y="${chartHeight - 14}" text-anchor="middle">${escapeXml(chart.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(chart.yLabel)}</text>`);
  for (const m of chart.marks ?? [])
    out.push(
      `<line x1="${f(px(m.x))}" x2="${f(px(m.x))}" y1="${margin.top}" y2="${margin.top + plotH}" stroke="#555" stroke-dasharray="2 3"/><text x="${f(px(m.x) + 3)}" y="${margin.top + 12 + 13 * (chart.marks ?? []).indexOf(m)}" font-size="11" fill="#333">${escapeXml(m.label)}</text>`,
    );
  chart.series.forEach((s, i) => {
    const color = palette[i] as string;
    const d = s.points.map(([x, y], j) => `${j === 0 ? 'M' : 'L'}${f(px(x))} ${f(py(y))}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    if (s.points.length <= 12) for (const [x, y] of s.points) out.push(`<circle cx="${f(px(x))}" cy="${f(py(y))}" r="3" fill="${color}"/>`);
    const ly = margin.top + 8 + i * 20;
    out.push(
      `<line x1="${margin.left + plotW + 12}" x2="${margin.left + plotW + 36}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/><text x="${margin.left + plotW + 42}" y="${ly + 4}">${escapeXml(s.name)}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** A Markdown table; numbers right-aligned. */
export function markdownTable(rows: readonly Record<string, string | number>[]): string {
  assert(rows.length > 0, 'markdownTable: no rows');
  const columns = Object.keys(rows[0] as object);
  const numeric = columns.map((c) => rows.every((r) => typeof r[c] === 'number'));
  const cell = (v: string | number | undefined): string => (v === undefined ? '' : typeof v === 'number' ? v.toLocaleString('en-US', { maximumFractionDigits: 3 }) : v.replace(/\|/g, '\\|'));
  return [`| ${columns.join(' | ')} |`, `|${numeric.map((n) => (n ? '---:' : '---')).join('|')}|`, ...rows.map((r) => `| ${columns.map((c) => cell(r[c])).join(' | ')} |`)].join('\n');
}

/**
 * Replaces every `{{name}}` in `template` with `values[name]`. An unknown name is an error that
 * lists the known ones, so a paper never ships with a hole in it.
 */
export function fill(template: string, values: Readonly<Record<string, string>>): string {
  const unknown = new Set<string>();
  const out = template.replace(/\{\{([a-zA-Z0-9:_.-]+)\}\}/g, (_, name: string) => {
    const v = values[name];
    if (v === undefined) unknown.add(name);
    return v ?? '';
  });
  if (unknown.size > 0) throw new Error(`unknown placeholders in the paper source: ${[...unknown].join(', ')}. Known: ${Object.keys(values).sort().join(', ')}`);
  return out;
}
