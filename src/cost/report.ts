/**
 * The priced runs (model.ts, `evaluate`) as text for a terminal and as JSON
 * for programs. Output depends only on the input: no locale, no clock.
 */
import { microseconds, type CostResult, type ExitReasonCost, type OverheadFigures, type PhaseBreakdown } from './model.js';

/** Options of renderText. */
export interface TextOptions {
  /** Exit reasons listed per run, most costly first (default 5). */
  readonly topExits?: number;
}

/** Options of toJson, renderJson and renderJsonLines. */
export interface JsonOptions {
  /** Exit reasons listed per run and phase, most costly first (default: all). */
  readonly topExits?: number;
}

/** A whole number of cycles with a comma every three digits: 1234567.4 → "1,234,567". */
export function formatCycles(cycles: number): string {
  const whole = Math.round(cycles);
  const digits = Math.abs(whole).toString();
  const groups: string[] = [];
  for (let end = digits.length; end > 0; end -= 3) groups.unshift(digits.slice(Math.max(0, end - 3), end));
  return (whole < 0 ? '-' : '') + groups.join(',');
}

/** A ratio with two decimals and a multiplication sign, or "n/a" for null. */
export function formatRatio(ratio: number | null): string {
  return ratio === null ? 'n/a' : `${ratio.toFixed(2)}×`;
}

/** A fraction as a percentage with one decimal (0 of 0 is "0.0%"). */
export function formatShare(part: number, whole: number): string {
  return `${(whole === 0 ? 0 : (100 * part) / whole).toFixed(1)}%`;
}

/** The overhead as "4.21× (+1,234 cycles)". */
export function formatOverhead(o: OverheadFigures): string {
  const sign = o.extraCycles >= 0 ? '+' : '';
  return `${formatRatio(o.ratio)} (${sign}${formatCycles(o.extraCycles)})`;
}

/**
 * Rows as lines of aligned columns, two spaces apart: the first column
 * left-aligned, the others right-aligned (they hold numbers).
 */
export function alignColumns(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, k) => (widths[k] = Math.max(widths[k] ?? 0, cell.length)));
  return rows.map((row) =>
    row
      .map((cell, k) => (k === 0 ? cell.padEnd(widths[k]) : cell.padStart(widths[k])))
      .join('  ')
      .trimEnd(),
  );
}

/** The four parts and the total of a breakdown, formatted. */
function partCells(cost: PhaseBreakdown): string[] {
  return [cost.guest.total, cost.transitions.total, cost.handlers.total, cost.walks.total, cost.total].map(formatCycles);
}

const PART_HEADERS = ['guest', 'transitions', 'handlers', 'page walks', 'total'];

/** The summary table: one row per run. */
function summaryLines(results: readonly CostResult[]): string[] {
  const withNative = results.some((r) => r.overhead !== undefined);
  const header = ['profile', ...PART_HEADERS, 'µs', ...(withNative ? ['vs native'] : [])];
  const rows = results.map((r) => [
    r.label,
    ...partCells(r.cost),
    microseconds(r.cost.total, r.profile).toFixed(1),
    ...(withNative ? [r.overhead === undefined ? '' : formatOverhead(r.overhead)] : []),
  ]);
  return alignColumns([header, ...rows]);
}

/** The top exit reasons of a breakdown as an indented table. */
function exitLines(exits: readonly ExitReasonCost[], total: number, top: number): string[] {
  if (exits.length === 0) return ['  no VM exits'];
  const shown = exits.slice(0, top);
  const rows = shown.map((e) => [e.reason, formatCycles(e.count), formatCycles(e.cycles), formatShare(e.cycles, total)]);
  const lines = alignColumns([['exit reason', 'exits', 'cycles', 'of total'], ...rows]).map((l) => `  ${l}`);
  const more = exits.length - shown.length;
  if (more > 0) lines.push(`  (${more} more exit ${more === 1 ? 'reason' : 'reasons'})`);
  return lines;
}

/** The per-phase table of a run, empty when it has no phases. */
function phaseLines(result: CostResult): string[] {
  if (result.cost.phases.length === 0) return [];
  const withNative = result.overhead !== undefined;
  const header = ['phase', ...PART_HEADERS, ...(withNative ? ['vs native'] : [])];
  const rows = result.cost.phases.map(({ phase, cost }) => {
    const o = result.overhead?.phases.find((p) => p.phase === phase);
    return [String(phase), ...partCells(cost), ...(withNative ? [o === undefined ? '' : formatOverhead(o)] : [])];
  });
  return alignColumns([header, ...rows]).map((l) => `  ${l}`);
}

/** The heading of a run's section: label, profile name and the part. */
function headingLine(r: CostResult): string {
  const p = r.profile;
  const name = r.label === p.name ? p.name : `${r.label} [${p.name}]`;
  const assist = `${p.ept ? 'EPT' : 'no EPT'}, ${p.vpid ? 'VPID' : 'no VPID'}`;
  return `${name}: ${p.fullName}, ${p.launchYear}, ${p.clockGHz} GHz, ${assist}; total ${formatCycles(r.cost.total)} cycles`;
}

/** One run's section: heading, top exits, phases, problems. */
function sectionLines(r: CostResult, top: number): string[] {
  return [
    headingLine(r),
    ...exitLines(r.cost.exitReasons, r.cost.total, top),
    ...phaseLines(r),
    ...r.problems.map((p) => `  note: ${p}`),
  ];
}

/**
 * The priced runs as plain text: a summary table (cycles in the guest, in
 * transitions, in handlers, in page walks, the total, µs on the part's clock,
 * and the overhead against the bare run where there is one), then a section
 * per run with its most costly exit reasons, its phases and any problems of
 * its counts. Ends with a newline.
 */
export function renderText(results: readonly CostResult[], options: TextOptions = {}): string {
  const top = options.topExits ?? 5;
  const lines = ['Modelled core cycles (prices and their sources: src/cost/profiles.ts)', '', ...summaryLines(results)];
  for (const r of results) lines.push('', ...sectionLines(r, top));
  return `${lines.join('\n')}\n`;
}

/** The four parts of a breakdown in JSON. */
export interface BreakdownJson {
  readonly guest: PhaseBreakdown['guest'];
  readonly transitions: PhaseBreakdown['transitions'];
  readonly handlers: PhaseBreakdown['handlers'];
  readonly walks: PhaseBreakdown['walks'];
}

/** One exit reason in JSON (cycles rounded to whole cycles). */
export interface ExitJson {
  readonly reason: string;
  readonly count: number;
  readonly cycles: number;
}

/** The overhead in JSON (ratio rounded to 4 decimals). */
export interface OverheadJson {
  readonly ratio: number | null;
  readonly extraCycles: number;
}

/** One phase in JSON. */
export interface PhaseJson {
  readonly phase: number;
  readonly totalCycles: number;
  readonly breakdown: BreakdownJson;
  readonly topExits: readonly ExitJson[];
  readonly overhead?: OverheadJson;
}

/** One priced run in JSON. */
export interface CostJson {
  /** The profile's name. */
  readonly profile: string;
  readonly label: string;
  readonly fullName: string;
  readonly launchYear: number;
  readonly clockGHz: number;
  readonly ept: boolean;
  readonly vpid: boolean;
  readonly totalCycles: number;
  /** totalCycles on the part's clock, rounded to 3 decimals. */
  readonly microseconds: number;
  readonly breakdown: BreakdownJson;
  readonly topExits: readonly ExitJson[];
  readonly native?: { readonly totalCycles: number };
  readonly overhead?: OverheadJson;
  readonly phases: readonly PhaseJson[];
  readonly problems: readonly string[];
}

function breakdownJson(cost: PhaseBreakdown): BreakdownJson {
  return { guest: cost.guest, transitions: cost.transitions, handlers: cost.handlers, walks: cost.walks };
}

function exitsJson(exits: readonly ExitReasonCost[], top: number): ExitJson[] {
  return exits.slice(0, top).map((e) => ({ reason: e.reason, count: e.count, cycles: Math.round(e.cycles) }));
}

function overheadJson(o: OverheadFigures): OverheadJson {
  return { ratio: o.ratio === null ? null : Math.round(o.ratio * 10000) / 10000, extraCycles: o.extraCycles };
}

function phasesJson(r: CostResult, top: number): PhaseJson[] {
  return r.cost.phases.map(({ phase, cost }) => {
    const o = r.overhead?.phases.find((p) => p.phase === phase);
    const json: PhaseJson = { phase, totalCycles: cost.total, breakdown: breakdownJson(cost), topExits: exitsJson(cost.exitReasons, top) };
    return o === undefined ? json : { ...json, overhead: overheadJson(o) };
  });
}

/** The priced runs as JSON values, one per run, in the order given. */
export function toJson(results: readonly CostResult[], options: JsonOptions = {}): CostJson[] {
  const top = options.topExits ?? Infinity;
  return results.map((r) => {
    const json: CostJson = {
      profile: r.profile.name,
      label: r.label,
      fullName: r.profile.fullName,
      launchYear: r.profile.launchYear,
      clockGHz: r.profile.clockGHz,
      ept: r.profile.ept,
      vpid: r.profile.vpid,
      totalCycles: r.cost.total,
      microseconds: Math.round(microseconds(r.cost.total, r.profile) * 1000) / 1000,
      breakdown: breakdownJson(r.cost),
      topExits: exitsJson(r.cost.exitReasons, top),
      phases: phasesJson(r, top),
      problems: [...r.problems],
    };
    if (r.native === undefined || r.overhead === undefined) return json;
    return { ...json, native: { totalCycles: r.native.total }, overhead: overheadJson(r.overhead) };
  });
}

/** The priced runs as one JSON array, indented, ending with a newline. */
export function renderJson(results: readonly CostResult[], options: JsonOptions = {}): string {
  return `${JSON.stringify(toJson(results, options), null, 2)}\n`;
}

/** The priced runs as JSON lines: one compact object per run, each line ending with a newline. */
export function renderJsonLines(results: readonly CostResult[], options: JsonOptions = {}): string {
  return toJson(results, options)
    .map((j) => `${JSON.stringify(j)}\n`)
    .join('');
}
