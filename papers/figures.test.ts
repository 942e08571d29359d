import test from 'ava';
import { chartHeight, chartWidth, fill, lineChart, markdownTable, tickLabel } from './figures.ts';

const pathPoints = (svg: string): [number, number][][] =>
  [...svg.matchAll(/<path d="([^"]+)"/g)].map((m) => [...(m[1] as string).matchAll(/[ML]([\d.]+) ([\d.]+)/g)].map((p) => [Number(p[1]), Number(p[2])]));

test('a line chart draws each series inside the plot, higher values higher up', (t) => {
  const svg = lineChart({
    title: 'T',
    xLabel: 'x',
    yLabel: 'y',
    series: [
      {
        name: 'a',
        points: [
          [1, 10],
          [2, 20],
          [3, 5],
        ],
      },
      {
        name: 'b <&>',
        points: [
          [1, 1],
          [3, 30],
        ],
        dashed: true,
      },
    ],
  });
  t.true(svg.startsWith('<svg'));
  t.true(svg.includes('b &lt;&amp;&gt;'), 'names are escaped');
  const [a, b] = pathPoints(svg);
  t.is(a?.length, 3);
  t.is(b?.length, 2);
  for (const [x, y] of [...(a ?? []), ...(b ?? [])]) {
    t.true(x >= 0 && x <= chartWidth && y >= 0 && y <= chartHeight);
  }
  // SVG y grows downwards: 20 is above 10, which is above 5.
  t.true((a?.[1]?.[1] as number) < (a?.[0]?.[1] as number));
  t.true((a?.[0]?.[1] as number) < (a?.[2]?.[1] as number));
  t.true(svg.includes('stroke-dasharray="6 4"'));
});

test('a log axis spaces decades evenly and refuses non-positive x', (t) => {
  const svg = lineChart({
    title: 'T',
    xLabel: 'x',
    yLabel: 'y',
    xLog: true,
    series: [
      {
        name: 'a',
        points: [
          [1, 0],
          [10, 1],
          [100, 2],
        ],
      },
    ],
  });
  const [a] = pathPoints(svg);
  const [p0, p1, p2] = a as [number, number][];
  t.true(Math.abs((p1 as [number, number])[0] - (p0 as [number, number])[0] - ((p2 as [number, number])[0] - (p1 as [number, number])[0])) < 0.2);
  t.throws(() => lineChart({ title: 'T', xLabel: 'x', yLabel: 'y', xLog: true, series: [{ name: 'a', points: [[0, 1]] }] }), { message: /bad point/ });
  t.throws(() => lineChart({ title: 'T', xLabel: 'x', yLabel: 'y', series: [] }), { message: /series/ });
});

test('fill replaces placeholders and names unknown ones', (t) => {
  t.is(fill('a {{x}} b {{table:y}}', { x: '1', 'table:y': '|t|' }), 'a 1 b |t|');
  const error = t.throws(() => fill('a {{x}} {{nope}}', { x: '1' }));
  t.regex(error?.message ?? '', /unknown placeholders in the paper source: nope\. Known: x/);
});

test('markdown tables right-align numeric columns and escape pipes', (t) => {
  const table = markdownTable([
    { name: 'a|b', n: 1234.5 },
    { name: 'c', n: 2 },
  ]);
  t.is(table, '| name | n |\n|---|---:|\n| a\\|b | 1,234.5 |\n| c | 2 |');
  t.is(tickLabel(1500), '1.5k');
  t.is(tickLabel(0.25), '0.25');
});
