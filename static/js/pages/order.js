// One order: its details, the actions its status allows, and its timeline across the three
// topics (topic, partition, offset and time of every event), anomalies flagged. Which actions
// an order takes, and the status a delivery moves to, come from the server's rules document.

import { api, isAbort, uuid } from '../api.js';
import { rules, actionsFor, isFinal, isRetry, nextDeliveryStatus } from '../rules.js';
import { can, roleNote } from '../session.js';
import { h, replace, pageHeader, time, fullTime, money, badge, anomalyFlag, notice, throttle, shortId, day } from '../ui.js';

export const orderPage = {
  title: 'Order',
  nav: 'orders',
  mount(main, ctx) {
    const id = decodeURIComponent(ctx.params[0]);
    const heading = pageHeader(h('span', {}, 'Order ', h('code', { class: 'id' }, id.slice(0, 8))));
    const statusLine = h('div', { class: 'order-status' });
    const body = h('div', { class: 'order-body' }, h('p', { class: 'muted' }, 'Loading…'));
    main.append(h('p', { class: 'breadcrumb' }, h('a', { href: '/orders' }, '← Orders')), heading, statusLine, body);

    // What the action panel said last; kept across re-renders caused by live events.
    let actionMessage = null;
    let order = null;
    let loaded = false;

    async function load() {
      try {
        const answer = await api(`/api/orders/${encodeURIComponent(id)}`, { signal: ctx.signal });
        order = answer.order;
        loaded = true;
        render();
      } catch (error) {
        if (isAbort(error)) return;
        if (!loaded) {
          replace(
            body,
            notice('error', error.status === 404 ? `No order ${id} has been read from Kafka (yet).` : `Cannot load the order: ${error.message}`),
            h('p', {}, h('button', { type: 'button', class: 'btn', onClick: () => load() }, 'Try again')),
          );
        }
      }
    }

    function render() {
      const o = order;
      document.title = `Order ${id.slice(0, 8)} · ${o.status ?? ''} · shopstream`;
      replace(statusLine, badge(o.status), anomalyFlag(o.anomalies), h('span', { class: 'muted small' }, ' · updated ', time(o.updated_at)));
      main.dataset.status = o.status ?? '';
      const focusBefore = document.activeElement && body.contains(document.activeElement) ? document.activeElement.id : null;
      replace(
        body,
        h(
          'div',
          { class: 'grid-2' },
          h(
            'section',
            { class: 'card', 'aria-labelledby': 'details-h' },
            h('h2', { id: 'details-h' }, 'Details'),
            h(
              'dl',
              { class: 'facts' },
              h('dt', {}, 'Order id'),
              h('dd', { class: 'mono' }, o.order_id),
              h('dt', {}, 'Customer'),
              h('dd', {}, o.customer_name ?? '—'),
              h('dt', {}, 'Email'),
              h('dd', {}, o.customer_email || '—'),
              h('dt', {}, 'Product'),
              h('dd', {}, o.product ?? '—'),
              h('dt', {}, 'Quantity'),
              h('dd', {}, String(o.quantity ?? '—')),
              h('dt', {}, 'Amount'),
              h('dd', {}, money(o.amount, o.currency)),
              h('dt', {}, 'Address'),
              h('dd', {}, o.address || '—'),
              h('dt', {}, 'Created'),
              h('dd', {}, o.created_at ? fullTime(o.created_at) : '—'),
              h('dt', {}, 'Last event'),
              h('dd', {}, fullTime(o.updated_at)),
            ),
          ),
          actionsPanel(o),
        ),
        timelineSection(o),
        paymentsSection(o),
        deliveriesSection(o),
      );
      if (focusBefore) document.getElementById(focusBefore)?.focus();
    }

    // --- actions -----------------------------------------------------------------------------

    function actionsPanel(o) {
      const messageBox = h('div', { class: 'action-message', id: 'action-message' });
      if (actionMessage) messageBox.append(notice(actionMessage.kind, actionMessage.text));
      const status = o.status;
      // Only a role that writes is offered the commands (the server refuses the others: 403).
      if (!can('client')) {
        return h(
          'section',
          { class: 'card', 'aria-labelledby': 'actions-h' },
          h('h2', { id: 'actions-h' }, 'Actions'),
          messageBox,
          h('p', { class: 'muted', id: 'actions-role' }, roleNote('Acting on an order (paying, cancelling, shipping, moving its delivery)', 'client')),
        );
      }
      // One form per command the server's rules allow in this status, in the document's order.
      const forms = actionsFor(rules, status)
        .map((action) => {
          switch (action) {
            case 'pay':
              return payForm(o);
            case 'cancel':
              return cancelForm();
            case 'ship':
              return shipForm();
            case 'advance': {
              const delivery = openDelivery(o);
              const next = delivery && nextDeliveryStatus(rules, delivery.status);
              return next ? advanceForm(delivery, next) : null;
            }
            default:
              return null; // a command this dashboard has no form for
          }
        })
        .filter(Boolean);
      if (!forms.length) {
        forms.push(h('p', { class: 'muted' }, isFinal(rules, status) ? `Nothing left to do: the order is ${status}.` : 'No action is possible in this state.'));
      }
      return h('section', { class: 'card', 'aria-labelledby': 'actions-h' }, h('h2', { id: 'actions-h' }, 'Actions'), messageBox, forms);
    }

    /**
     * Runs a write with one Idempotency-Key per form (a double click sends the same key, so
     * it cannot write twice), shows the answer, then reads the order again.
     */
    function actionForm(name, fields, submitLabel, run, { danger = false } = {}) {
      const key = uuid();
      const button = h('button', { type: 'submit', class: `btn ${danger ? 'btn-danger' : 'btn-primary'}`, id: `action-${name}` }, submitLabel);
      const form = h('form', { class: 'action-form', 'aria-label': submitLabel, novalidate: true }, fields, button);
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        if (button.disabled) return;
        button.disabled = true;
        form.setAttribute('aria-busy', 'true');
        try {
          actionMessage = await run(key, form);
        } catch (error) {
          if (isAbort(error)) return;
          actionMessage = { kind: 'error', text: error.status === 409 ? `Refused: ${error.message}` : error.message };
        } finally {
          button.disabled = false;
          form.removeAttribute('aria-busy');
        }
        await load();
        // The form that had focus was rebuilt: put the keyboard on the outcome.
        const outcome = document.querySelector('#action-message .notice');
        if (outcome) {
          outcome.tabIndex = -1;
          outcome.focus();
        }
      });
      return form;
    }

    function payForm(o) {
      const select = h(
        'select',
        { id: 'pay-method', name: 'method' },
        rules.payment_methods.map((m) => h('option', { value: m }, m)),
      );
      const label = isRetry(rules, o.status, 'pay') ? `Retry payment of ${money(o.amount, o.currency)}` : `Pay ${money(o.amount, o.currency)}`;
      return actionForm('pay', h('div', { class: 'field' }, h('label', { for: 'pay-method' }, 'Payment method'), select), label, async (key) => {
        const r = await api(`/api/orders/${encodeURIComponent(id)}/payments?wait=true`, {
          method: 'POST',
          body: { method: select.value },
          idempotencyKey: key,
        });
        const p = r.payment || {};
        return p.status === 'SUCCESS'
          ? { kind: 'success', text: `Payment accepted (${p.method}).` }
          : { kind: 'error', text: `Payment failed${p.failure_reason ? `: ${p.failure_reason}` : ''}. You may retry.` };
      });
    }

    function cancelForm() {
      const input = h('input', { id: 'cancel-reason', name: 'reason', type: 'text', maxlength: '200', autocomplete: 'off' });
      return actionForm(
        'cancel',
        h('div', { class: 'field' }, h('label', { for: 'cancel-reason' }, 'Reason (optional)'), input),
        'Cancel order',
        async (key) => {
          const reason = input.value.trim();
          await api(`/api/orders/${encodeURIComponent(id)}/cancel?wait=true`, { method: 'POST', body: reason ? { reason } : {}, idempotencyKey: key });
          return { kind: 'success', text: 'Order cancelled.' };
        },
        { danger: true },
      );
    }

    function shipForm() {
      const select = h(
        'select',
        { id: 'ship-carrier', name: 'carrier' },
        h('option', { value: '' }, 'Any carrier'),
        rules.carriers.map((c) => h('option', { value: c }, c)),
      );
      return actionForm('ship', h('div', { class: 'field' }, h('label', { for: 'ship-carrier' }, 'Carrier'), select), 'Ship', async (key) => {
        const body = select.value ? { carrier: select.value } : {};
        const r = await api(`/api/orders/${encodeURIComponent(id)}/deliveries?wait=true`, { method: 'POST', body, idempotencyKey: key });
        const d = r.delivery || {};
        return { kind: 'success', text: `Shipped with ${d.carrier ?? 'a carrier'}${d.estimated_date ? `, expected ${day(d.estimated_date)}` : ''}.` };
      });
    }

    function advanceForm(delivery, next) {
      return actionForm(
        'advance',
        h('p', { class: 'muted small' }, 'Parcel ', shortId(delivery.delivery_id), ` is ${delivery.status}.`),
        `Mark as ${next}`,
        async (key) => {
          await api(`/api/deliveries/${encodeURIComponent(delivery.delivery_id)}?wait=true`, { method: 'PATCH', body: { status: next }, idempotencyKey: key });
          return { kind: 'success', text: `Delivery marked as ${next}.` };
        },
      );
    }

    // --- history -----------------------------------------------------------------------------

    function timelineSection(o) {
      const rows = (o.timeline || []).map((e) =>
        h(
          'tr',
          { class: e.anomaly ? 'row-anomaly' : null },
          h('td', {}, time(e.time)),
          h('th', { scope: 'row' }, h('code', {}, e.event_type)),
          h('td', {}, h('span', { class: `topic topic-${e.topic}` }, e.topic)),
          h('td', { class: 'num' }, String(e.partition)),
          h('td', { class: 'num' }, String(e.offset)),
          h('td', {}, eventSummary(e), rawData(e.data)),
          h(
            'td',
            {},
            e.anomaly ? h('span', { class: 'anomaly-flag' }, h('span', { 'aria-hidden': 'true' }, '⚠ '), e.anomaly) : h('span', { class: 'muted' }, '—'),
          ),
        ),
      );
      return h(
        'section',
        { class: 'card', 'aria-labelledby': 'timeline-h' },
        h('h2', { id: 'timeline-h' }, 'Timeline'),
        h('p', { class: 'muted small' }, 'Every event of this order, across the orders, payments and deliveries topics, in event time.'),
        h(
          'div',
          { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-labelledby': 'timeline-h' },
          h(
            'table',
            { class: 'data-table' },
            h('caption', { class: 'visually-hidden' }, 'Events of this order, oldest first'),
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ['Time', 'Event', 'Topic', 'Partition', 'Offset', 'Details', 'Anomaly'].map((c) => h('th', { scope: 'col' }, c)),
              ),
            ),
            h('tbody', {}, rows),
          ),
        ),
      );
    }

    function paymentsSection(o) {
      if (!o.payments?.length) return null;
      return h(
        'section',
        { class: 'card', 'aria-labelledby': 'payments-h' },
        h('h2', { id: 'payments-h' }, 'Payments'),
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'data-table' },
            h('caption', { class: 'visually-hidden' }, 'Payments of this order'),
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ['Payment', 'Time', 'Method', 'Amount', 'Result'].map((c) => h('th', { scope: 'col' }, c)),
              ),
            ),
            h(
              'tbody',
              {},
              o.payments.map((p) =>
                h(
                  'tr',
                  {},
                  h('th', { scope: 'row' }, shortId(p.payment_id)),
                  h('td', {}, time(p.timestamp)),
                  h('td', {}, p.method),
                  h('td', { class: 'num' }, money(p.amount, o.currency)),
                  h('td', {}, badge(p.status), p.failure_reason ? h('span', { class: 'muted small' }, ` ${p.failure_reason}`) : null),
                ),
              ),
            ),
          ),
        ),
      );
    }

    function deliveriesSection(o) {
      if (!o.deliveries?.length) return null;
      return h(
        'section',
        { class: 'card', 'aria-labelledby': 'deliveries-h' },
        h('h2', { id: 'deliveries-h' }, 'Delivery'),
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'data-table' },
            h('caption', { class: 'visually-hidden' }, 'Deliveries of this order'),
            h(
              'thead',
              {},
              h(
                'tr',
                {},
                ['Delivery', 'Carrier', 'Status', 'Estimated', 'Updated', 'Address'].map((c) => h('th', { scope: 'col' }, c)),
              ),
            ),
            h(
              'tbody',
              {},
              o.deliveries.map((d) =>
                h(
                  'tr',
                  {},
                  h('th', { scope: 'row' }, shortId(d.delivery_id)),
                  h('td', {}, d.carrier ?? '—'),
                  h('td', {}, badge(d.status)),
                  h('td', {}, day(d.estimated_date)),
                  h('td', {}, time(d.updated_at)),
                  h('td', {}, d.address),
                ),
              ),
            ),
          ),
        ),
      );
    }

    // Live: any event about this order reads it again (its timeline and status changed).
    const reload = throttle(() => {
      if (!ctx.signal.aborted) load();
    }, 300);
    const off = ctx.live.on('event', (frame) => {
      if (((frame.data && frame.data.order_id) || frame.key) === id) reload();
    });
    load();
    return () => {
      off();
      reload.cancel();
    };
  },
};

/** The order's last delivery that can still be advanced. */
function openDelivery(o) {
  const open = (o.deliveries || []).filter((d) => nextDeliveryStatus(rules, d.status));
  return open[open.length - 1] || null;
}

function eventSummary(e) {
  const d = e.data || {};
  switch (e.event_type) {
    case 'order.created':
      return `${d.product ?? ''}${d.quantity > 1 ? ` × ${d.quantity}` : ''} · ${money(d.amount, d.currency)}`;
    case 'order.cancelled':
      return d.reason ? `Cancelled: ${d.reason}` : 'Cancelled';
    case 'payment.processed':
      return `${d.method ?? ''} · ${d.status ?? ''}${d.failure_reason ? ` (${d.failure_reason})` : ''}`;
    case 'delivery.created':
    case 'delivery.updated':
      return `${d.status ?? ''}${d.carrier ? ` · ${d.carrier}` : ''}`;
    default:
      return '';
  }
}

function rawData(data) {
  return h('details', { class: 'raw' }, h('summary', {}, 'record'), h('pre', {}, JSON.stringify(data, null, 2)));
}
