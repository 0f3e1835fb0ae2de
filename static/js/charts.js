// Hand-rolled charts: a per-minute bar chart in SVG and the lifecycle funnel in HTML. Both carry
// a text alternative (the chart's summary for screen readers; every bar has a tooltip).

import { h, hhmm, count } from './ui.js';
import { funnelCounts } from './rules.js';

const H = 190;
const compact = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });
const PAD = { top: 12, right: 8, bottom: 22, left: 40 };

/** A "nice" upper bound for an axis: 1, 2, 2.5 or 5 times a power of ten. */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/**
 * points: [{ at: Date, value: number }], oldest first. `format` renders a value.
 * Returns an <svg role="img"> with a title and a description summarising the series.
 */
export function barChart(points, { title, format = count, unit = '', width = 600 }) {
  // Drawn at the box's real width (no stretching), so text keeps its shape.
  const W = Math.max(240, Math.round(width));
  const max = niceMax(Math.max(0, ...points.map((p) => p.value)));
  const innerW = W - PAD.left - PAD.right;
  const innerH = H - PAD.top - PAD.bottom;
  const step = innerW / Math.max(1, points.length);
  const barW = Math.max(1, step - 2);
  const total = points.reduce((s, p) => s + p.value, 0);
  const peak = points.reduce((best, p) => (p.value > (best?.value ?? -1) ? p : best), null);
  const last = points[points.length - 1];
  const summary = points.length
    ? `${title}, ${points.length} minutes from ${hhmm(points[0].at)} to ${hhmm(last.at)}: total ${format(total)}${unit}, ` +
      (peak && peak.value > 0 ? `peak ${format(peak.value)}${unit} at ${hhmm(peak.at)}, ` : '') +
      `this minute ${format(last.value)}${unit}.`
    : `${title}: no data.`;

  const grid = [0, 0.5, 1].map((f) => {
    const y = PAD.top + innerH * (1 - f);
    return h(
      'g',
      { class: 'grid' },
      h('line', { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y }),
      h('text', { x: PAD.left - 6, y: y + 4, 'text-anchor': 'end' }, compact.format(max * f)),
    );
  });
  const bars = points.map((p, i) => {
    const bh = max ? (p.value / max) * innerH : 0;
    const x = PAD.left + i * step + 1;
    return h(
      'rect',
      {
        class: i === points.length - 1 ? 'bar bar-now' : 'bar',
        x: x.toFixed(1),
        y: (PAD.top + innerH - bh).toFixed(1),
        width: barW.toFixed(1),
        height: Math.max(0, bh).toFixed(1),
      },
      h('title', {}, `${hhmm(p.at)}: ${format(p.value)}${unit}`),
    );
  });
  const labels = points
    .map((p, i) => ({ p, i }))
    .filter(({ i }) => (i % (W < 420 ? 30 : 15) === 0 && i < points.length - 8) || i === points.length - 1)
    .map(({ p, i }) =>
      h(
        'text',
        {
          class: 'axis',
          x: (PAD.left + i * step + step / 2).toFixed(1),
          y: H - 6,
          'text-anchor': i === points.length - 1 ? 'end' : 'middle',
        },
        i === points.length - 1 ? 'now' : hhmm(p.at),
      ),
    );

  const id = `chart-${title.replace(/\W+/g, '-').toLowerCase()}`;
  return h(
    'svg',
    {
      class: 'chart',
      viewBox: `0 0 ${W} ${H}`,
      width: W,
      height: H,
      role: 'img',
      'aria-labelledby': `${id}-t ${id}-d`,
    },
    h('title', { id: `${id}-t` }, title),
    h('desc', { id: `${id}-d` }, summary),
    grid,
    h('g', { class: 'bars' }, bars),
    labels,
  );
}

/** What the orders in a stage wait for, by the first command they take. */
const WAITING = { pay: 'waiting for payment', ship: 'waiting to ship', advance: 'on the way' };

/** `Payment Failed` as a label: `Payment failed`. */
const sentence = (s) => s.charAt(0) + s.slice(1).toLowerCase();

/**
 * The order lifecycle funnel from `by_status` counts, by the stages and statuses of the rules
 * document `doc`: how many orders reached each stage (Placed → Paid → Shipped → Delivered), and
 * where the others are stuck or fell off.
 */
export function funnel(doc, byStatus, total) {
  const counts = funnelCounts(doc, byStatus, total);
  const stages = counts.stages.map((s, i) => ({
    label: i === 0 ? 'Placed' : sentence(s.status),
    value: s.value,
    note: s.actions.length ? `${count(s.waiting)} ${WAITING[s.actions[0]] ?? `waiting to ${s.actions[0]}`}` : '',
  }));
  const side = counts.side.map((s) => ({
    label: sentence(s.status),
    value: s.value,
    cls: s.final ? 'muted' : 'bad',
    note: s.retried ? 'may still be retried' : '',
  }));
  const pct = (v) => (total ? Math.round((v / total) * 1000) / 10 : 0);
  const row = (s, cls = '') => {
    const bar = h('span', { class: `funnel-bar ${cls}` });
    bar.style.setProperty('--w', `${Math.max(total ? 0.5 : 0, pct(s.value))}%`);
    return h(
      'li',
      { class: 'funnel-row' },
      h('span', { class: 'funnel-label' }, s.label),
      h('span', { class: 'funnel-track', 'aria-hidden': 'true' }, bar),
      h('span', { class: 'funnel-value' }, h('strong', {}, count(s.value)), h('span', { class: 'muted' }, ` · ${pct(s.value)} %`)),
      s.note ? h('span', { class: 'funnel-note muted small' }, s.note) : null,
    );
  };
  return h(
    'div',
    { class: 'funnel' },
    h(
      'ol',
      { class: 'funnel-stages', 'aria-label': 'Orders that reached each stage' },
      stages.map((s) => row(s)),
    ),
    h(
      'ul',
      { class: 'funnel-side', 'aria-label': 'Orders that left the path' },
      side.map((s) => row(s, s.cls)),
    ),
  );
}
