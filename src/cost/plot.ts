/**
 * The priced runs (model.ts, `evaluate`) as a stacked bar chart in SVG: one
 * bar per run, split into guest, transitions, handlers and page walks, with
 * its total above it and, where the run has a bare run, that run's total as a
 * dashed line and the overhead ratio. A standalone document (no scripts, no
 * fonts or images fetched) whose bytes depend only on the input.
 */
import type { CostResult } from './model.js';
import { formatCycles, formatRatio } from './report.js';

/** One part of a bar: its name in the legend, its colour, and how to read it from a result. */
interface Segment {
  readonly name: string;
  readonly colour: string;
  readonly cycles: (r: CostResult) => number;
}

const SEGMENTS: readonly Segment[] = [
  { name: 'guest', colour: '#4e79a7', cycles: (r) => r.cost.guest.total },
  { name: 'transitions', colour: '#e15759', cycles: (r) => r.cost.transitions.total },
  { name: 'handlers', colour: '#f28e2b', cycles: (r) => r.cost.handlers.total },
  { name: 'page walks', colour: '#59a14f', cycles: (r) => r.cost.walks.total },
];

const HEIGHT = 460;
const TOP = 80;
const BOTTOM = 84;
const LEFT = 90;
const RIGHT = 30;
const BAR_WIDTH = 56;
const BAR_GAP = 36;
const MIN_WIDTH = 560;
const PLOT_HEIGHT = HEIGHT - TOP - BOTTOM;

/**
 * Characters XML 1.0 does not allow in a document (C0 controls other than tab,
 * line feed and carriage return; lone surrogates; U+FFFE and U+FFFF).
 */
const NOT_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Text made safe for XML character data and attribute values; characters XML cannot hold become U+FFFD. */
export function escapeXml(text: string): string {
  return text
    .replace(NOT_XML, '\uFFFD')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** A coordinate with at most two decimals, without trailing zeros. */
function coordinate(x: number): string {
  return String(Math.round(x * 100) / 100);
}

/** A cycle count in three significant digits: 0, 950, 12.3k, 4.5M, 1.2G. */
export function compactCycles(cycles: number): string {
  const units: [number, string][] = [
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ];
  for (const [size, suffix] of units) {
    if (Math.abs(cycles) >= size) return `${Number((cycles / size).toPrecision(3))}${suffix}`;
  }
  return String(Number(cycles.toPrecision(3)));
}

/** A step of 1, 2 or 5 times a power of ten, at least `rough`. */
export function niceStep(rough: number): number {
  if (!(rough > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(rough));
  for (const factor of [1, 2, 5, 10]) {
    if (factor * power >= rough) return factor * power;
  }
  return 10 * power;
}

/** The top of the y axis and its tick step for the largest value shown (about five ticks). */
export function yAxis(largest: number): { top: number; step: number } {
  const step = niceStep(largest / 5);
  return { top: Math.max(step, Math.ceil(largest / step) * step), step };
}

/** Where a bar's centre is, counting bars from 0. */
function barCentre(index: number): number {
  return LEFT + BAR_GAP + index * (BAR_WIDTH + BAR_GAP) + BAR_WIDTH / 2;
}

function chartWidth(bars: number): number {
  return Math.max(MIN_WIDTH, LEFT + BAR_GAP + bars * (BAR_WIDTH + BAR_GAP) + RIGHT);
}

/** The height in pixels of a value on an axis whose top is `top`. */
function scale(value: number, top: number): number {
  return (value / top) * PLOT_HEIGHT;
}

function axisLines(width: number, top: number, step: number): string[] {
  const base = TOP + PLOT_HEIGHT;
  const lines = [`<g class="axes" font-size="11" fill="#333">`];
  const ticks = Math.round(top / step);
  for (let k = 0; k <= ticks; k++) {
    const value = k * step;
    const y = coordinate(base - scale(value, top));
    lines.push(
      `<line x1="${LEFT - 4}" y1="${y}" x2="${width - RIGHT}" y2="${y}" stroke="#ddd"/>`,
      `<text x="${LEFT - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${compactCycles(value)}</text>`,
    );
  }
  const middle = coordinate(TOP + PLOT_HEIGHT / 2);
  lines.push(
    `<line x1="${LEFT}" y1="${TOP}" x2="${LEFT}" y2="${base}" stroke="#333"/>`,
    `<line x1="${LEFT}" y1="${base}" x2="${width - RIGHT}" y2="${base}" stroke="#333"/>`,
    `<text x="20" y="${middle}" text-anchor="middle" transform="rotate(-90 20 ${middle})" font-size="12">modelled core cycles</text>`,
    `<text x="${coordinate((LEFT + width - RIGHT) / 2)}" y="${HEIGHT - 14}" text-anchor="middle" font-size="12">processor profile</text>`,
    `</g>`,
  );
  return lines;
}

function legendLines(withNative: boolean): string[] {
  const lines = [`<g class="legend" font-size="11" fill="#333">`];
  SEGMENTS.forEach((s, k) => {
    const x = LEFT + k * 110;
    lines.push(
      `<rect x="${x}" y="44" width="12" height="12" fill="${s.colour}"/>`,
      `<text x="${x + 17}" y="54">${escapeXml(s.name)}</text>`,
    );
  });
  if (withNative) {
    const x = LEFT + SEGMENTS.length * 110;
    lines.push(
      `<line x1="${x}" y1="50" x2="${x + 14}" y2="50" stroke="#000" stroke-dasharray="4 2"/>`,
      `<text x="${x + 19}" y="54">bare run total</text>`,
    );
  }
  lines.push(`</g>`);
  return lines;
}

function barLines(r: CostResult, index: number, top: number): string[] {
  const centre = barCentre(index);
  const x = coordinate(centre - BAR_WIDTH / 2);
  const label = escapeXml(r.label);
  const lines = [
    `<g class="bar" data-profile="${escapeXml(r.profile.name)}" data-label="${label}">`,
    `<title>${label}: ${formatCycles(r.cost.total)} cycles</title>`,
  ];
  let below = 0;
  for (const s of SEGMENTS) {
    const cycles = s.cycles(r);
    const y = TOP + PLOT_HEIGHT - scale(below + cycles, top);
    const height = scale(cycles, top);
    lines.push(
      `<rect x="${x}" y="${coordinate(y)}" width="${BAR_WIDTH}" height="${coordinate(height)}" fill="${s.colour}">` +
        `<title>${escapeXml(s.name)}: ${formatCycles(cycles)} cycles</title></rect>`,
    );
    below += cycles;
  }
  const totalY = TOP + PLOT_HEIGHT - scale(r.cost.total, top);
  lines.push(`<text x="${coordinate(centre)}" y="${coordinate(totalY - 6)}" text-anchor="middle" font-size="11">${compactCycles(r.cost.total)}</text>`);
  if (r.native !== undefined && r.overhead !== undefined) {
    const nativeY = coordinate(TOP + PLOT_HEIGHT - scale(r.native.total, top));
    lines.push(
      `<line x1="${x}" y1="${nativeY}" x2="${coordinate(centre + BAR_WIDTH / 2)}" y2="${nativeY}" stroke="#000" stroke-dasharray="4 2"/>`,
      `<text x="${coordinate(centre)}" y="${coordinate(totalY - 20)}" text-anchor="middle" font-size="10">${escapeXml(formatRatio(r.overhead.ratio))} bare</text>`,
    );
  }
  lines.push(...labelLines(r.label, centre), `</g>`);
  return lines;
}

/** A bar's label under the axis, one word per line so that neighbours do not overlap. */
function labelLines(label: string, centre: number): string[] {
  const words = label.split(/\s+/).filter((w) => w.length > 0);
  const x = coordinate(centre);
  const spans = words.map((w, k) => `<tspan x="${x}" dy="${k === 0 ? 0 : 14}">${escapeXml(w)}</tspan>`);
  return [`<text x="${x}" y="${TOP + PLOT_HEIGHT + 18}" text-anchor="middle" font-size="12">${spans.join('')}</text>`];
}

/**
 * The runs as a standalone SVG document (stacked bars, y axis in modelled
 * cycles, legend, totals, and the overhead against the bare run where there
 * is one). Equal inputs give byte-identical output.
 */
export function renderSvg(results: readonly CostResult[], title = 'Modelled cost per processor'): string {
  const width = chartWidth(results.length);
  const largest = Math.max(0, ...results.map((r) => Math.max(r.cost.total, r.native?.total ?? 0)));
  const { top, step } = yAxis(largest);
  const withNative = results.some((r) => r.native !== undefined);
  const lines = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${HEIGHT}" viewBox="0 0 ${width} ${HEIGHT}" font-family="sans-serif">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect x="0" y="0" width="${width}" height="${HEIGHT}" fill="#fff"/>`,
    `<text x="${LEFT}" y="28" font-size="15" fill="#000">${escapeXml(title)}</text>`,
    ...legendLines(withNative),
    ...axisLines(width, top, step),
    ...results.flatMap((r, k) => barLines(r, k, top)),
    `</svg>`,
  ];
  return `${lines.join('\n')}\n`;
}
