import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { costCountsArbitrary } from './arbitraries.js';
import { emptyCounts, type CostCounts } from './counts.js';
import { evaluate, type CostResult } from './model.js';
import { compactCycles, escapeXml, niceStep, renderSvg, yAxis } from './plot.js';
import { COST_PROFILES, PRESCOTT, SKYLAKE } from './profiles.js';

function counts(patch: Partial<CostCounts>): CostCounts {
  return { ...emptyCounts(), ...patch };
}

const ENTITY = /&(amp|lt|gt|quot|apos);/g;

/**
 * What keeps the text from being well-formed XML, as far as this document's
 * vocabulary goes: the declaration, elements with double-quoted attributes,
 * character data, the five predefined entities. Empty when it is well formed.
 */
function xmlProblems(xml: string): string[] {
  const problems: string[] = [];
  const declaration = '<?xml version="1.0" encoding="UTF-8"?>\n';
  if (!xml.startsWith(declaration)) problems.push('no XML declaration');
  const body = xml.slice(declaration.length);
  const tag = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>/g;
  const stack: string[] = [];
  let roots = 0;
  let last = 0;
  const checkText = (text: string): void => {
    if (/[<>]/.test(text) || /&/.test(text.replace(ENTITY, ''))) problems.push(`bad character data: ${JSON.stringify(text.slice(0, 40))}`);
    if (stack.length === 0 && text.trim() !== '') problems.push('text outside the root element');
  };
  for (const m of body.matchAll(tag)) {
    checkText(body.slice(last, m.index));
    last = m.index + m[0].length;
    const [, closing, name, attributes, selfClosing] = m;
    if (/&/.test(attributes!.replace(ENTITY, ''))) problems.push(`bad attribute value in <${name}>`);
    if (closing === '/') {
      const open = stack.pop();
      if (open !== name) problems.push(`</${name}> closes <${open ?? 'nothing'}>`);
    } else {
      if (stack.length === 0) roots++;
      if (selfClosing !== '/') stack.push(name!);
    }
  }
  checkText(body.slice(last));
  if (stack.length > 0) problems.push(`unclosed: ${stack.join(', ')}`);
  if (roots !== 1) problems.push(`${roots} root elements`);
  return problems;
}

/** The bar groups of a chart, each as its text. */
function barGroups(svg: string): string[] {
  return [...svg.matchAll(/<g class="bar"[\s\S]*?\n<\/g>/g)].map((m) => m[0]);
}

/** The y and height of each rect of a bar, bottom segment first. */
function segments(bar: string): { y: number; height: number }[] {
  return [...bar.matchAll(/<rect x="[\d.]+" y="([\d.-]+)" width="\d+" height="([\d.-]+)"/g)].map((m) => ({ y: Number(m[1]), height: Number(m[2]) }));
}

const guest = { instructions: { ordinary: 40_000, memory: 10_000, privileged: 200, io: 20 }, walkReferences: 800 };
const bare = counts(guest);
const run = counts({ ...guest, exits: { IO_INSTRUCTION: 20, CPUID: 4 }, entries: 24, vmreads: 240, deviceOps: 20, eptReferences: 4000 });
const results = (): CostResult[] => COST_PROFILES.map((profile) => evaluate({ profile, counts: structuredClone(run), native: structuredClone(bare) }));

describe('renderSvg', () => {
  const svg = renderSvg(results());

  it('is well-formed XML with one svg root', () => {
    expect(xmlProblems(svg)).toEqual([]);
    expect(svg).toMatch(/^<\?xml[^\n]*\n<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" /);
    expect(svg.endsWith('</svg>\n')).toBe(true);
  });

  it('has one bar group per profile, in order, each with its total', () => {
    const bars = barGroups(svg);
    expect(bars).toHaveLength(COST_PROFILES.length);
    results().forEach((r, k) => {
      expect(bars[k]).toContain(`data-profile="${r.profile.name}"`);
      expect(bars[k]).toContain(`>${compactCycles(r.cost.total)}</text>`);
      expect(bars[k]).toContain(`<title>${r.label}: `);
    });
  });

  it('stacks four segments from the axis up without gaps', () => {
    for (const bar of barGroups(svg)) {
      const parts = segments(bar);
      expect(parts).toHaveLength(4);
      let bottom = 376;
      for (const { y, height } of parts) {
        expect(height).toBeGreaterThanOrEqual(0);
        expect(Math.abs(y + height - bottom)).toBeLessThanOrEqual(0.02);
        bottom = y;
      }
    }
  });

  it('has axis labels, a legend and the overhead', () => {
    expect(svg).toContain('>modelled core cycles</text>');
    expect(svg).toContain('>processor profile</text>');
    for (const name of ['guest', 'transitions', 'handlers', 'page walks', 'bare run total']) expect(svg).toContain(`>${name}</text>`);
    expect(svg).toContain('stroke-dasharray="4 2"');
    expect(svg).toMatch(/>\d+\.\d\d× bare<\/text>/);
  });

  it('fetches nothing and runs nothing', () => {
    expect(svg.replace('xmlns="http://www.w3.org/2000/svg"', '')).not.toMatch(/https?:|href|<image|<script|<style|@import|url\(|<foreignObject/i);
  });

  it('is byte-identical for equal inputs, and changes when a count does', () => {
    expect(renderSvg(results())).toBe(svg);
    const other = COST_PROFILES.map((profile) => evaluate({ profile, counts: { ...run, entries: 25 }, native: bare }));
    expect(renderSvg(other)).not.toBe(svg);
  });

  it('leaves out the bare-run marks when no run has a bare run', () => {
    const out = renderSvg([evaluate({ profile: SKYLAKE, counts: run })]);
    expect(out).not.toContain('bare run');
    expect(out).not.toContain('stroke-dasharray');
    expect(xmlProblems(out)).toEqual([]);
  });

  it('draws an empty chart for no runs and for runs of 0 cycles', () => {
    expect(xmlProblems(renderSvg([]))).toEqual([]);
    const zero = renderSvg([evaluate({ profile: PRESCOTT, counts: emptyCounts() })]);
    expect(xmlProblems(zero)).toEqual([]);
    expect(zero).not.toMatch(/NaN|Infinity/);
  });

  it('escapes labels and titles, and splits labels on spaces', () => {
    const out = renderSvg([evaluate({ profile: SKYLAKE, counts: run, label: 'a<b & "c" \u0001' })], 'x > y');
    expect(xmlProblems(out)).toEqual([]);
    expect(out).toContain('data-label="a&lt;b &amp; &quot;c&quot; \uFFFD"');
    expect(out).toContain('<tspan x="154" dy="0">a&lt;b</tspan><tspan x="154" dy="14">&amp;</tspan>');
    expect(out).toContain('<title>x &gt; y</title>');
  });

  it('is well formed, with a bar per run and no bad numbers, for any counts, profiles and labels (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom(...COST_PROFILES), costCountsArbitrary(), fc.option(costCountsArbitrary({ shape: 'bare' })), fc.string({ unit: 'binary', maxLength: 20 })), { maxLength: 9 }),
        (runs) => {
          const rs = runs.map(([profile, c, native, label]) => evaluate({ profile, counts: c, label, ...(native === null ? {} : { native }) }));
          const out = renderSvg(rs);
          expect(xmlProblems(out)).toEqual([]);
          expect(barGroups(out)).toHaveLength(rs.length);
          expect(out).not.toMatch(/NaN|Infinity|height="-/);
          expect(renderSvg(rs)).toBe(out);
        },
      ),
    );
  });
});

describe('axis helpers', () => {
  it('pick steps of 1, 2 or 5 times a power of ten', () => {
    expect([0.6, 1, 3, 7, 12, 1500, 2_000_001].map(niceStep)).toEqual([1, 1, 5, 10, 20, 2000, 5_000_000]);
    expect(niceStep(0)).toBe(1);
  });

  it('put the top of the axis at the first step at or above the largest value', () => {
    expect(yAxis(0)).toEqual({ top: 1, step: 1 });
    expect(yAxis(5_517_710)).toEqual({ top: 6_000_000, step: 2_000_000 });
    expect(yAxis(1000)).toEqual({ top: 1000, step: 200 });
  });

  it('write cycles in three significant digits', () => {
    expect([0, 950, 1000, 12_345, 4_560_000, 1_234_000_000].map(compactCycles)).toEqual(['0', '950', '1k', '12.3k', '4.56M', '1.23G']);
  });

  it('escape the five XML specials', () => {
    expect(escapeXml(`<a href="x">&'`)).toBe('&lt;a href=&quot;x&quot;&gt;&amp;&apos;');
  });
});
