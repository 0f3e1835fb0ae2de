// Kafka: per topic and partition the earliest, latest and consumed offsets, lag in records and
// seconds, skipped records; a live tail merged across the three topics; and a record browser
// that seeks a partition by offset or by time.

import { api, isAbort, query } from '../api.js';
import { rules } from '../rules.js';
import { can, roleNote } from '../session.js';
import { h, replace, pageHeader, time, count, seconds, ago, notice, orderLink, fullTime, money } from '../ui.js';

const TAIL = 100;

export const kafkaPage = {
  title: 'Kafka',
  nav: 'kafka',
  mount(main, ctx) {
    const summary = h('div', { class: 'kafka-summary' });
    const partitionsBox = h('div', {}, h('p', { class: 'muted' }, 'Reading offsets…'));
    const tailBody = h('tbody');
    const tailCount = h('span', { class: 'muted small' });
    const pause = h('button', { type: 'button', class: 'btn btn-small', 'aria-pressed': 'false' }, 'Pause');
    let paused = false;
    let partitions = [];

    main.append(
      pageHeader(
        'Kafka',
        h('p', { class: 'lede' }, 'The log under the shop: offsets and lag per partition, every event as it is consumed, and any record by offset or time.'),
      ),
      summary,
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'parts-h' },
        h('h2', { id: 'parts-h' }, 'Partitions'),
        h('p', { class: 'muted small' }, 'Consumed is the next offset shopstream reads; lag is what is written but not read yet. Refreshed every 2 s.'),
        partitionsBox,
      ),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'tail-h' },
        h('div', { class: 'card-head' }, h('h2', { id: 'tail-h' }, 'Live tail'), tailCount, pause),
        h('p', { class: 'muted small' }, `The last ${TAIL} events of the three topics, newest first, as this page receives them.`),
        h(
          'div',
          { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-labelledby': 'tail-h' },
          h(
            'table',
            { class: 'data-table table-tail' },
            h('caption', { class: 'visually-hidden' }, 'Live tail: latest events across the orders, payments and deliveries topics'),
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ['Time', 'Topic', 'Partition', 'Offset', 'Event', 'Order', 'Summary'].map((c) => h('th', { scope: 'col' }, c)),
              ),
            ),
            tailBody,
          ),
        ),
      ),
      seekSection(ctx, () => partitions),
    );

    // --- partitions --------------------------------------------------------------------------
    let inFlight = false;
    async function refresh() {
      if (inFlight) return;
      inFlight = true;
      try {
        const k = await api('/api/kafka', { signal: ctx.signal });
        partitions = k.partitions || [];
        renderSummary(k);
        renderPartitions(partitions);
      } catch (error) {
        if (!isAbort(error)) replace(partitionsBox, notice('error', `Cannot read the offsets: ${error.message}`));
      } finally {
        inFlight = false;
      }
    }

    function renderSummary(k) {
      const lag = partitions.reduce((n, p) => n + (p.lag || 0), 0);
      const fact = (term, ...desc) => h('div', { class: 'fact' }, h('dt', {}, term), h('dd', {}, ...desc));
      replace(
        summary,
        h(
          'dl',
          { class: 'facts-inline' },
          fact('Brokers', h('span', { class: 'mono' }, (k.brokers || []).join(', '))),
          fact('Read model', k.caught_up ? 'caught up' : 'catching up…'),
          fact('Total lag', `${count(lag)} ${lag === 1 ? 'record' : 'records'}`),
          fact('Live dashboards', count(k.live_clients)),
          fact('This page’s cursor', h('span', { class: 'mono small wrap' }, ctx.live.cursorText().replaceAll(',', ', ') || '—')),
        ),
      );
    }

    function renderPartitions(parts) {
      const rows = parts.map((p) =>
        h(
          'tr',
          { class: p.stalled ? 'row-stalled' : p.lag > 0 ? 'row-lag' : null, title: p.stalled ? `Stalled: ${p.stalled}` : null },
          h('th', { scope: 'row' }, h('span', { class: `topic topic-${p.topic}` }, p.topic_name || p.topic)),
          h('td', { class: 'num' }, String(p.partition)),
          h('td', { class: 'num' }, count(p.earliest_offset)),
          h('td', { class: 'num' }, count(p.latest_offset)),
          h('td', { class: 'num' }, count(p.next_offset)),
          h('td', { class: 'num' }, count(p.lag)),
          h('td', { class: 'num' }, seconds(p.lag_seconds)),
          h('td', { class: 'num' }, p.skipped ? h('strong', { class: 'warn' }, count(p.skipped)) : '0'),
          h('td', { class: 'num' }, p.unreadable_batches ? h('strong', { class: 'warn' }, count(p.unreadable_batches)) : '0'),
          h('td', { class: 'num col-opt' }, count(p.offset_resets)),
          h('td', { class: 'col-opt' }, p.last_record_time ? h('span', { title: fullTime(p.last_record_time) }, ago(p.last_record_time)) : '—'),
        ),
      );
      // A partition that makes no progress while records wait is said, never left to the lag
      // column alone.
      const stalled = parts.filter((p) => p.stalled);
      replace(
        partitionsBox,
        ...stalled.map((p) => notice('error', `${p.topic_name || p.topic} partition ${p.partition} is stalled at offset ${p.next_offset}: ${p.stalled}`)),
        h(
          'div',
          { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-labelledby': 'parts-h' },
          h(
            'table',
            { class: 'data-table table-partitions' },
            h('caption', { class: 'visually-hidden' }, 'Offsets and lag per topic and partition'),
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ['Topic', 'Partition', 'Earliest', 'Latest', 'Consumed', 'Lag', 'Lag (time)', 'Skipped', 'Unreadable', 'Resets', 'Last record'].map((c, i) =>
                  h('th', { scope: 'col', class: i >= 9 ? 'col-opt' : null }, c),
                ),
              ),
            ),
            h('tbody', {}, rows),
          ),
        ),
      );
    }

    // --- tail --------------------------------------------------------------------------------
    const tailRow = (f, fresh) =>
      h(
        'tr',
        { class: fresh ? 'row-new' : null },
        h('td', {}, time(f.timestamp)),
        h('td', {}, h('span', { class: `topic topic-${f.topic}` }, f.topic)),
        h('td', { class: 'num' }, String(f.partition)),
        h('td', { class: 'num' }, String(f.offset)),
        h('th', { scope: 'row' }, h('code', {}, f.event_type)),
        h('td', {}, f.data?.order_id || f.key ? orderLink(f.data?.order_id || f.key) : '—'),
        h('td', {}, frameSummary(f)),
      );

    function renderTail() {
      replace(
        tailBody,
        [...ctx.live.recent].reverse().map((f) => tailRow(f, false)),
      );
      tailCount.textContent = `${ctx.live.recent.length} shown`;
    }

    const off = ctx.live.on('event', (frame) => {
      if (paused) return;
      tailBody.prepend(tailRow(frame, true));
      while (tailBody.rows.length > TAIL) tailBody.lastElementChild.remove();
      tailCount.textContent = `${tailBody.rows.length} shown`;
    });
    pause.addEventListener('click', () => {
      paused = !paused;
      pause.setAttribute('aria-pressed', String(paused));
      pause.textContent = paused ? 'Resume' : 'Pause';
      if (!paused) renderTail();
    });

    renderTail();
    refresh();
    const timer = setInterval(refresh, 2000);
    return () => {
      off();
      clearInterval(timer);
    };
  },
};

function frameSummary(f) {
  const d = f.data || {};
  switch (f.event_type) {
    case 'order.created':
      return `${d.customer_name ?? ''} · ${d.product ?? ''} · ${money(d.amount, d.currency)}`;
    case 'order.cancelled':
      return `Cancelled${d.reason ? `: ${d.reason}` : ''}`;
    case 'payment.processed':
      return `${d.method ?? ''} · ${d.status ?? ''}${d.failure_reason ? ` (${d.failure_reason})` : ''}`;
    default:
      return `${d.status ?? ''}${d.carrier ? ` · ${d.carrier}` : ''}`;
  }
}

// --- seek ------------------------------------------------------------------------------------

function seekSection(ctx, partitionsNow) {
  // The records hold every customer's details as written: the server gives them to the admin only.
  if (!can('admin')) {
    return h(
      'section',
      { class: 'card', 'aria-labelledby': 'seek-h' },
      h('h2', { id: 'seek-h' }, 'Browse records'),
      h('p', { class: 'muted small' }, 'Reads one partition straight from Kafka, from an offset or from a time, including records shopstream skips.'),
      notice('info', h('p', { id: 'seek-role' }, roleNote('Browsing records', 'admin'))),
    );
  }
  const topic = h(
    'select',
    { id: 'seek-topic', name: 'topic' },
    rules.topics.map((t) => h('option', { value: t }, t)),
  );
  const partition = h('input', { id: 'seek-partition', name: 'partition', type: 'number', min: '0', step: '1', value: '0', inputmode: 'numeric' });
  const byOffset = h('input', { type: 'radio', name: 'mode', id: 'seek-by-offset', value: 'offset', checked: true });
  const byTime = h('input', { type: 'radio', name: 'mode', id: 'seek-by-time', value: 'time' });
  const offset = h('input', {
    id: 'seek-offset',
    name: 'offset',
    type: 'number',
    min: '0',
    step: '1',
    value: '0',
    inputmode: 'numeric',
    'aria-label': 'Offset to start at',
  });
  const when = h('input', {
    id: 'seek-time',
    name: 'time',
    type: 'datetime-local',
    step: '1',
    disabled: true,
    'aria-label': 'Time to start at',
    'aria-describedby': 'seek-time-help',
  });
  const limit = h('input', { id: 'seek-limit', name: 'limit', type: 'number', min: '1', max: '200', step: '1', value: '20', inputmode: 'numeric' });
  const results = h('div', { class: 'seek-results', 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Read records');

  const syncMode = () => {
    offset.disabled = !byOffset.checked;
    when.disabled = !byTime.checked;
  };
  byOffset.addEventListener('change', syncMode);
  byTime.addEventListener('change', syncMode);

  const hint = h('span', { class: 'muted small' });
  const showPartitions = () => {
    const n = partitionsNow().filter((p) => p.topic === topic.value).length;
    if (n) {
      partition.max = String(n - 1);
      hint.textContent = `${topic.value} has ${n} partitions (0 to ${n - 1})`;
    }
  };
  topic.addEventListener('change', showPartitions);
  partition.addEventListener('focus', showPartitions);

  async function read(params) {
    submit.disabled = true;
    results.setAttribute('aria-busy', 'true');
    try {
      const r = await api(`/api/events${query(params)}`, { signal: ctx.signal });
      replace(
        results,
        recordsTable(r, params, (next) => read(next)),
      );
    } catch (error) {
      if (!isAbort(error)) replace(results, notice('error', `Cannot read the records: ${error.message}`));
    } finally {
      submit.disabled = false;
      results.removeAttribute('aria-busy');
    }
  }

  const form = h(
    'form',
    { class: 'seek-form', novalidate: true, 'aria-labelledby': 'seek-h' },
    h('div', { class: 'field' }, h('label', { for: 'seek-topic' }, 'Topic'), topic),
    h('div', { class: 'field' }, h('label', { for: 'seek-partition' }, 'Partition'), partition),
    h(
      'fieldset',
      { class: 'field seek-mode' },
      h('legend', {}, 'Start at'),
      h('div', { class: 'radio-row' }, byOffset, h('label', { for: 'seek-by-offset' }, 'Offset'), offset),
      h('div', { class: 'radio-row' }, byTime, h('label', { for: 'seek-by-time' }, 'Time'), when),
      h('span', { id: 'seek-time-help', class: 'muted small' }, 'Local time; the first record at or after it.'),
    ),
    h('div', { class: 'field' }, h('label', { for: 'seek-limit' }, 'Records'), limit),
    h('div', { class: 'field field-actions' }, submit),
    hint,
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const params = { topic: topic.value, partition: partition.value.trim() || '0', limit: limit.value.trim() || '20' };
    if (byTime.checked) {
      const d = when.value ? new Date(when.value) : null;
      if (!d || Number.isNaN(d.getTime())) {
        replace(results, notice('error', 'Choose a time to seek to.'));
        when.focus();
        return;
      }
      params.time = d.toISOString();
    } else {
      params.offset = offset.value.trim() || '0';
    }
    read(params);
  });

  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'seek-h' },
    h('h2', { id: 'seek-h' }, 'Browse records'),
    h('p', { class: 'muted small' }, 'Reads one partition straight from Kafka, from an offset or from a time, including records shopstream skips.'),
    form,
    results,
  );
}

function recordsTable(r, params, readNext) {
  const records = r.records || [];
  const rows = records.map((rec) =>
    h(
      'tr',
      { class: rec.error ? 'row-anomaly' : null },
      h('th', { scope: 'row', class: 'num' }, String(rec.offset)),
      h('td', {}, time(rec.timestamp)),
      h('td', {}, rec.key ? orderLink(rec.key, h('code', { class: 'id', title: rec.key }, rec.key.slice(0, 8))) : h('span', { class: 'muted' }, 'no key')),
      h('td', {}, rec.event_type ? h('code', {}, rec.event_type) : '—'),
      h(
        'td',
        { class: 'small' },
        Object.entries(rec.headers || {}).map(([k, v]) => h('span', { class: 'header-pair' }, h('span', { class: 'muted' }, `${k}: `), v)),
      ),
      h(
        'td',
        {},
        rec.error ? h('span', { class: 'anomaly-flag' }, h('span', { 'aria-hidden': 'true' }, '⚠ '), `skipped: ${rec.error}`) : null,
        h('details', { class: 'raw' }, h('summary', {}, 'value'), h('pre', {}, rec.data === null ? '(not JSON)' : JSON.stringify(rec.data, null, 2))),
      ),
    ),
  );
  const more = r.next_offset !== undefined && r.next_offset !== null && records.length > 0;
  return h(
    'div',
    {},
    h(
      'p',
      { class: 'muted small', role: 'status' },
      `${records.length} ${records.length === 1 ? 'record' : 'records'} of ${r.topic ?? params.topic} partition ${r.partition ?? params.partition}` +
        (records.length ? `, offsets ${records[0].offset} to ${records[records.length - 1].offset}` : ' (nothing there yet)'),
    ),
    records.length
      ? h(
          'div',
          { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Records read' },
          h(
            'table',
            { class: 'data-table table-records' },
            h('caption', { class: 'visually-hidden' }, 'Records read from Kafka'),
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ['Offset', 'Timestamp', 'Key', 'Event', 'Headers', 'Value'].map((c) => h('th', { scope: 'col' }, c)),
              ),
            ),
            h('tbody', {}, rows),
          ),
        )
      : null,
    more
      ? h(
          'p',
          {},
          h(
            'button',
            {
              type: 'button',
              class: 'btn',
              onClick: () => readNext({ topic: params.topic, partition: params.partition, limit: params.limit, offset: String(r.next_offset) }),
            },
            `Next records (from offset ${r.next_offset})`,
          ),
        )
      : null,
  );
}
