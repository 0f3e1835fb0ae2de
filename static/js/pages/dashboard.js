// Dashboard: key figures, orders and revenue per minute over the last hour, the lifecycle
// funnel, the pipeline's health and the traffic simulator's controls; while the server replays
// the log at start, a progress bar above them.
//
// Figures come from /api/stats, read again when events arrive (at most every 500 ms) and every
// 10 s (so the per-minute charts move on even when nothing happens).

import { api, isAbort } from '../api.js';
import { rules, funnelCounts } from '../rules.js';
import { can, roleNote } from '../session.js';
import { h, replace, pageHeader, count, money, percent, seconds, throttle, notice } from '../ui.js';
import { barChart, funnel } from '../charts.js';
import { describeReplay } from '../replay.js';

const reducedMotion = matchMedia('(prefers-reduced-motion: reduce)');

export const dashboardPage = {
  title: 'Dashboard',
  nav: 'dashboard',
  mount(main, ctx) {
    const figure = (id, label) => {
      const value = h('p', { class: 'counter-value', id: `counter-${id}`, 'aria-describedby': `counter-${id}-label` }, '—');
      const sub = h('p', { class: 'counter-sub muted' });
      const card = h(
        'div',
        { class: 'card counter', dataset: { counter: id } },
        h('h3', { class: 'counter-label', id: `counter-${id}-label` }, label),
        value,
        sub,
      );
      return { card, value, sub };
    };
    const figures = {
      orders: figure('orders', 'Orders'),
      revenue: figure('revenue', 'Revenue'),
      success: figure('success', 'Payment success'),
      delivering: figure('delivering', 'Deliveries under way'),
      anomalies: figure('anomalies', 'Anomalies'),
      events: figure('events', 'Events consumed'),
    };
    const ordersChart = h('div', { class: 'chart-box' });
    const revenueChart = h('div', { class: 'chart-box' });
    const funnelBox = h('div', {});
    const pipelineBox = h('div', { class: 'pipeline' }, h('p', { class: 'muted' }, 'Reading…'));
    const errorBox = h('div', {});

    main.append(
      pageHeader('Dashboard', h('p', { class: 'lede' }, 'The shop right now, from the events consumed off Kafka. Figures move as events arrive.')),
      replayPanel(ctx),
      errorBox,
      h(
        'section',
        { class: 'counters', 'aria-labelledby': 'figures-h' },
        h('h2', { id: 'figures-h', class: 'visually-hidden' }, 'Key figures'),
        Object.values(figures).map((f) => f.card),
      ),
      h(
        'div',
        { class: 'grid-2' },
        h(
          'section',
          { class: 'card', 'aria-labelledby': 'opm-h' },
          h('h2', { id: 'opm-h' }, 'Orders per minute'),
          h('p', { class: 'muted small' }, 'Last hour, local time'),
          ordersChart,
        ),
        h(
          'section',
          { class: 'card', 'aria-labelledby': 'rpm-h' },
          h('h2', { id: 'rpm-h' }, 'Revenue per minute'),
          h('p', { class: 'muted small' }, 'Value of the orders placed, all currencies added, last hour'),
          revenueChart,
        ),
      ),
      h(
        'div',
        { class: 'grid-2' },
        h('section', { class: 'card', 'aria-labelledby': 'funnel-h' }, h('h2', { id: 'funnel-h' }, 'Order lifecycle'), funnelBox),
        h(
          'div',
          { class: 'stack-cards' },
          simulatorPanel(ctx),
          h(
            'section',
            { class: 'card', 'aria-labelledby': 'pipe-h' },
            h('h2', { id: 'pipe-h' }, 'Pipeline'),
            pipelineBox,
            h('p', {}, h('a', { href: '/kafka' }, 'Partitions, offsets and the live tail →')),
          ),
        ),
      ),
    );

    let inFlight = false;
    let again = false;
    let lastStats = null;
    let drawnWidth = 0;
    // Charts are drawn at their box's width: draw again when it changes.
    const resize = new ResizeObserver(() => {
      if (lastStats && ordersChart.clientWidth !== drawnWidth) {
        drawnWidth = ordersChart.clientWidth;
        drawCharts();
      }
    });
    resize.observe(ordersChart);

    async function refresh() {
      if (inFlight) {
        again = true;
        return;
      }
      inFlight = true;
      try {
        const stats = await api('/api/stats', { signal: ctx.signal });
        render(stats);
        errorBox.replaceChildren();
      } catch (error) {
        if (isAbort(error)) return;
        errorBox.replaceChildren(notice('error', `Cannot read the figures: ${error.message}`));
      } finally {
        inFlight = false;
        if (again && !ctx.signal.aborted) {
          again = false;
          refresh();
        }
      }
    }

    function setFigure(f, value, sub) {
      if (f.value.textContent !== value) {
        f.value.textContent = value;
        f.value.style.setProperty('--len', String(Math.max(6, value.length)));
        // A short highlight when a figure moves: Web Animations (no forced layout), and at most
        // every 3 s per card, so that steady traffic does not keep the page repainting.
        const now = performance.now();
        if (!reducedMotion.matches && now - (f.bumped || -Infinity) > 3000) {
          f.bumped = now;
          const css = getComputedStyle(f.card);
          f.card.animate([{ backgroundColor: css.getPropertyValue('--info-bg').trim() || 'transparent' }, { backgroundColor: css.backgroundColor }], {
            duration: 900,
            easing: 'ease-out',
          });
        }
      }
      f.sub.textContent = sub;
    }

    function render(s) {
      const total = s.orders?.total ?? 0;
      const perMinute = s.orders_per_minute || [];
      const lastHour = perMinute.reduce((n, m) => n + (m.orders || 0), 0);
      setFigure(figures.orders, count(total), `${count(lastHour)} in the last hour`);
      const revenue = [...(s.revenue || [])].sort((a, b) => b.amount - a.amount);
      if (revenue.length) {
        setFigure(
          figures.revenue,
          money(revenue[0].amount, revenue[0].currency),
          revenue.length > 1
            ? revenue
                .slice(1)
                .map((r) => money(r.amount, r.currency))
                .join(' · ')
            : 'paid orders',
        );
      } else {
        setFigure(figures.revenue, money(0, rules.default_currency), 'paid orders');
      }
      const p = s.payments || {};
      setFigure(figures.success, percent(p.success_ratio), `${count(p.succeeded)} succeeded · ${count(p.failed)} failed`);
      const by = s.orders?.by_status || {};
      const arrived = funnelCounts(rules, by, total).stages.at(-1);
      setFigure(
        figures.delivering,
        count(s.orders?.in_delivery),
        `${count(arrived.value)} ${arrived.status.toLowerCase()} · ${count(s.deliveries?.total)} ${s.deliveries?.total === 1 ? 'parcel' : 'parcels'} in all`,
      );
      setFigure(figures.anomalies, count(s.anomalies), 'events that broke the lifecycle');
      figures.anomalies.card.classList.toggle('counter-alert', (s.anomalies || 0) > 0);
      setFigure(figures.events, count(s.events), 'applied to the read model');

      lastStats = s;
      drawCharts();
      replace(funnelBox, funnel(rules, by, total));
    }

    function drawCharts() {
      const perMinute = lastStats?.orders_per_minute || [];
      const points = perMinute.map((m) => ({ at: new Date(m.minute), value: m.orders || 0 }));
      replace(ordersChart, barChart(points, { title: 'Orders per minute', width: ordersChart.clientWidth }));
      const revenuePoints = perMinute.map((m) => ({ at: new Date(m.minute), value: Number(m.revenue) || 0 }));
      replace(revenueChart, barChart(revenuePoints, { title: 'Revenue per minute', format: (v) => money(v), width: revenueChart.clientWidth }));
    }

    async function refreshPipeline() {
      try {
        const k = await api('/api/kafka', { signal: ctx.signal });
        const parts = k.partitions || [];
        const lag = parts.reduce((n, p) => n + (p.lag || 0), 0);
        const lagSeconds = parts.reduce((n, p) => Math.max(n, p.lag_seconds || 0), 0);
        const skipped = parts.reduce((n, p) => n + (p.skipped || 0), 0);
        replace(
          pipelineBox,
          h(
            'dl',
            { class: 'facts' },
            h('dt', {}, 'Read model'),
            h('dd', {}, k.caught_up ? 'caught up with Kafka' : 'catching up…'),
            h('dt', {}, 'Lag'),
            h('dd', {}, `${count(lag)} ${lag === 1 ? 'record' : 'records'}${lag ? ` · ${seconds(lagSeconds)}` : ''}`),
            h('dt', {}, 'Skipped records'),
            h('dd', {}, count(skipped)),
            h('dt', {}, 'Partitions'),
            h('dd', {}, count(parts.length)),
            h('dt', {}, 'Live dashboards'),
            h('dd', {}, count(k.live_clients)),
            h('dt', {}, 'Brokers'),
            h('dd', { class: 'mono' }, (k.brokers || []).join(', ')),
          ),
        );
      } catch (error) {
        if (isAbort(error)) return;
        replace(pipelineBox, notice('error', `Kafka: ${error.message}`));
      }
    }

    const onEvent = throttle(() => {
      if (!ctx.signal.aborted) refresh();
    }, 500);
    const off = ctx.live.on('event', onEvent);
    const offHello = ctx.live.on('hello', () => refresh());
    const timer = setInterval(() => {
      refresh();
    }, 10000);
    const pipeTimer = setInterval(() => {
      refreshPipeline();
    }, 5000);
    refresh();
    refreshPipeline();
    return () => {
      off();
      offHello();
      resize.disconnect();
      onEvent.cancel();
      clearInterval(timer);
      clearInterval(pipeTimer);
    };
  },
};

// --- the replay at start ---------------------------------------------------------------------

/** How often /readyz is read while the server catches up with the log. */
const REPLAY_POLL_MS = 1000;

/**
 * A bar and a line of figures while the server replays the log (a new or rebuilt store), read
 * from /readyz every second until it is caught up, and again whenever the live connection
 * says hello (the server may have restarted). Hidden otherwise.
 */
function replayPanel(ctx) {
  const bar = h('progress', {
    class: 'replay-bar',
    id: 'replay-bar',
    max: '100',
    value: '0',
    'aria-labelledby': 'replay-h',
    'aria-describedby': 'replay-line',
  });
  const line = h('p', { class: 'replay-line', id: 'replay-line' });
  const panel = h(
    'section',
    { class: 'notice notice-info replay', id: 'replay', 'aria-labelledby': 'replay-h', hidden: true },
    h('h2', { id: 'replay-h', class: 'replay-title' }, 'Catching up with the log'),
    bar,
    line,
    h('p', { class: 'muted small' }, 'The figures below are those of the events read so far; they grow until the server has read the whole log.'),
  );
  let timer = null;
  const stop = () => {
    clearTimeout(timer);
    timer = null;
  };
  const read = async () => {
    stop();
    let again = true;
    try {
      const readyz = await api('/readyz', { signal: ctx.signal, reportUnauthorized: false });
      const shown = describeReplay(readyz);
      panel.hidden = !shown;
      if (shown) {
        bar.value = shown.percent;
        bar.textContent = `${Math.round(shown.percent)} %`;
        line.textContent = shown.text;
      }
      // Before the consumers start there is no replay yet: ask again until caught up.
      again = readyz?.caught_up !== true;
    } catch (error) {
      if (isAbort(error)) return;
      // 503 while Kafka is away: nothing to show now, ask again.
    }
    if (again && !ctx.signal.aborted) timer = setTimeout(read, REPLAY_POLL_MS);
  };
  const offHello = ctx.live.on('hello', () => read());
  ctx.signal.addEventListener(
    'abort',
    () => {
      stop();
      offHello();
    },
    { once: true },
  );
  read();
  return panel;
}

// --- simulator -------------------------------------------------------------------------------

function simulatorPanel(ctx) {
  const state = h('p', { class: 'sim-state', role: 'status' }, 'Reading…');
  const rate = h('input', {
    id: 'sim-rate',
    name: 'rate',
    type: 'number',
    min: '0.1',
    max: '200',
    step: '0.1',
    value: '2',
    inputmode: 'decimal',
    'aria-describedby': 'sim-rate-help',
  });
  const failure = h('input', { id: 'sim-failure', name: 'payment_failure_rate', type: 'range', min: '0', max: '100', step: '1', value: '10' });
  const failureOut = h('output', { for: 'sim-failure', id: 'sim-failure-out' }, '10 %');
  const toggle = h('button', { type: 'button', class: 'btn btn-primary', id: 'sim-toggle' }, 'Start');
  const apply = h('button', { type: 'submit', class: 'btn' }, 'Apply settings');
  const error = h('div', { class: 'field-error', id: 'sim-error' });
  // Its state is for every role to see; its settings only for the admin (the server refuses the others).
  const controls = can('admin');
  const roleLine = controls ? null : h('p', { class: 'muted small', id: 'sim-role' }, roleNote('Starting, stopping and setting the simulator', 'admin'));
  let running = false;
  let available = true;

  failure.addEventListener('input', () => {
    failureOut.textContent = `${failure.value} %`;
  });

  const form = h(
    'form',
    { class: 'sim-form', novalidate: true },
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'sim-rate' }, 'Rate'),
      rate,
      h('span', { id: 'sim-rate-help', class: 'help muted small' }, 'order lifecycles started per second, 0.1 to 200'),
    ),
    h('div', { class: 'field' }, h('label', { for: 'sim-failure' }, 'Payment failure rate'), h('span', { class: 'range-row' }, failure, failureOut)),
    h('div', { class: 'actions' }, toggle, apply),
    error,
  );

  const show = (s) => {
    running = Boolean(s.running);
    const started = s.started || {};
    state.textContent = running ? `Running: ${s.rate} lifecycles/s, ${Math.round((s.payment_failure_rate || 0) * 100)} % of payments fail.` : 'Stopped.';
    state.append(
      h(
        'span',
        { class: 'muted small block' },
        `Started so far: ${count(started.orders)} orders, ${count(started.payments)} payments, ${count(started.deliveries)} deliveries` +
          (s.errors ? ` · ${count(s.errors)} errors${s.last_error ? ` (last: ${s.last_error})` : ''}` : ''),
      ),
    );
    toggle.textContent = running ? 'Stop' : 'Start';
    toggle.classList.toggle('btn-danger', running);
    toggle.classList.toggle('btn-primary', !running);
    toggle.setAttribute('aria-pressed', String(running));
    panel.dataset.running = String(running);
  };

  const fillInputs = (s) => {
    if (document.activeElement !== rate) rate.value = String(s.rate);
    if (document.activeElement !== failure) {
      failure.value = String(Math.round((s.payment_failure_rate || 0) * 100));
      failureOut.textContent = `${failure.value} %`;
    }
  };

  const read = async (first) => {
    if (!available) return;
    try {
      const s = await api('/api/simulator', { signal: ctx.signal });
      show(s);
      if (first) fillInputs(s);
    } catch (e) {
      if (isAbort(e)) return;
      if (e.status === 404) {
        available = false;
        state.textContent = 'This server has no simulator.';
        form.hidden = true;
        if (roleLine) roleLine.hidden = true;
      } else {
        state.textContent = `Cannot read the simulator: ${e.message}`;
      }
    }
  };

  const send = async (body) => {
    error.replaceChildren();
    rate.removeAttribute('aria-invalid');
    toggle.disabled = true;
    apply.disabled = true;
    try {
      const s = await api('/api/simulator', { method: 'POST', body, signal: ctx.signal });
      show(s);
      fillInputs(s);
    } catch (e) {
      if (isAbort(e)) return;
      const messages = e.fields.length
        ? e.fields.map((f) => `${f.field === 'rate' ? 'Rate' : f.field === 'payment_failure_rate' ? 'Payment failure rate' : f.field}: ${f.message}`)
        : [e.message];
      if (e.fields.some((f) => f.field === 'rate')) {
        rate.setAttribute('aria-invalid', 'true');
        rate.setAttribute('aria-errormessage', 'sim-error');
      }
      error.replaceChildren(h('p', { role: 'alert' }, messages.join('; ')));
    } finally {
      toggle.disabled = false;
      apply.disabled = false;
    }
  };

  const settings = () => {
    const body = {};
    const r = rate.value.trim();
    body.rate = r === '' ? r : Number(r);
    body.payment_failure_rate = Number(failure.value) / 100;
    return body;
  };

  toggle.addEventListener('click', () => send(running ? { running: false } : { running: true, ...settings() }));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    send(settings());
  });

  const panel = h(
    'section',
    { class: 'card simulator', 'aria-labelledby': 'sim-h' },
    h('h2', { id: 'sim-h' }, 'Traffic simulator'),
    h('p', { class: 'muted small' }, 'Drives whole lifecycles (order → payment → delivery steps) through the same path as the API.'),
    state,
    controls ? form : roleLine,
  );

  read(true);
  const timer = setInterval(() => read(false), 3000);
  ctx.signal.addEventListener('abort', () => clearInterval(timer), { once: true });
  return panel;
}
