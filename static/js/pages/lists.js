// The three live tables: Orders, Payments, Deliveries. Statuses are the server's: a row shows
// what a live frame says the event led to (`order_status`, `payment_status`, `delivery_status`),
// and the filters offer the statuses of the rules document.

import { rules, orderRowChanges, isNewer, deliveryRank } from '../rules.js';
import { h, pageHeader, time, money, badge, shortId, orderLink, anomalyFlag, day } from '../ui.js';
import { mountTable } from '../table.js';

const lower = (s) => String(s ?? '').toLowerCase();
const has = (field, q) => lower(field).includes(q);
const kafkaPosition = (k) =>
  k ? h('span', { class: 'mono muted', title: `${k.topic} partition ${k.partition}, offset ${k.offset}` }, `p${k.partition} · #${k.offset}`) : '—';

// --- orders ----------------------------------------------------------------------------------

/** An order's row fields, from the order detail (which also carries its whole history). */
function summary(o) {
  if (!o) return null;
  const { timeline, payments, deliveries, ...row } = o;
  return row;
}

/** The order id an event is about: its data says it, the record key too. */
const orderIdOf = (frame) => (frame.data && frame.data.order_id) || frame.key;

export const ordersPage = {
  title: 'Orders',
  nav: 'orders',
  mount(main, ctx) {
    main.append(
      pageHeader(
        'Orders',
        h('p', { class: 'lede' }, 'Every order, newest first, live from the ', h('code', {}, 'orders'), ' topic; payments and deliveries move their status.'),
      ),
    );
    return mountTable(main, ctx, {
      kind: 'orders',
      noun: ['order', 'orders'],
      endpoint: '/api/orders',
      statuses: rules.order_statuses,
      searchLabel: 'Search',
      searchPlaceholder: 'Customer, email, product or order id',
      caption: 'Orders, newest first',
      id: (o) => o.order_id,
      time: (o) => o.created_at,
      columns: [
        { label: 'Order', render: (o) => orderLink(o.order_id) },
        { label: 'Created', render: (o) => time(o.created_at) },
        {
          label: 'Customer',
          render: (o) => h('span', { class: 'stack' }, h('span', {}, o.customer_name ?? '—'), h('span', { class: 'muted small' }, o.customer_email ?? '')),
        },
        { label: 'Product', render: (o) => `${o.product ?? '—'}${o.quantity > 1 ? ` × ${o.quantity}` : ''}` },
        { label: 'Amount', className: 'num', render: (o) => money(o.amount, o.currency) },
        { label: 'Status', render: (o) => h('span', { class: 'status-cell' }, badge(o.status), anomalyFlag(o.anomalies)) },
        { label: 'Address', className: 'col-opt', render: (o) => o.address ?? '' },
      ],
      matches: (o, f) => {
        if (f.status && o.status !== f.status) return false;
        if (!f.q) return true;
        const q = lower(f.q);
        return has(o.customer_name, q) || has(o.customer_email, q) || has(o.product, q) || String(o.order_id).includes(q);
      },
      // A row read again (after an anomaly) replaces what is shown only if it is not older.
      stale: (item, shown) => isNewer(shown, item),
      onEvent(frame, table) {
        const id = orderIdOf(frame);
        if (!id) return;
        const path = `/api/orders/${encodeURIComponent(id)}`;
        const pick = (body) => summary(body.order);
        if (table.has(id)) {
          const row = table.get(id);
          // Nothing when the frame is a duplicate or older than what the row shows.
          const changes = orderRowChanges(frame, row);
          if (!changes) return;
          table.patch(id, changes);
          // A newer event that left the status as it was may have changed what frames do not
          // carry (the server flagged it as an anomaly, say): read the row again.
          if (changes.status === row.status) table.refresh(id, path, pick);
        } else if (frame.event_type === 'order.created') {
          const d = frame.data || {};
          table.upsert({
            order_id: id,
            customer_name: d.customer_name,
            customer_email: d.customer_email ?? '',
            product: d.product,
            quantity: d.quantity ?? 1,
            amount: d.amount,
            currency: d.currency ?? rules.default_currency,
            address: d.address ?? '',
            status: frame.order_status,
            seq: frame.seq,
            created_at: frame.timestamp,
            updated_at: frame.timestamp,
            anomalies: 0,
          });
        } else if (table.filters.status && table.filters.status === frame.order_status) {
          // An order not shown that now has the status the list is filtered on.
          table.fetchAndInsert(path, pick);
        }
      },
    });
  },
};

// --- payments --------------------------------------------------------------------------------

export const paymentsPage = {
  title: 'Payments',
  nav: 'payments',
  mount(main, ctx) {
    main.append(
      pageHeader(
        'Payments',
        h('p', { class: 'lede' }, 'Every payment attempt, newest first, live from the ', h('code', {}, 'payments'), ' topic. A failed payment may be retried.'),
      ),
    );
    return mountTable(main, ctx, {
      kind: 'payments',
      noun: ['payment', 'payments'],
      endpoint: '/api/payments',
      statuses: rules.payment_statuses,
      searchLabel: 'Search',
      searchPlaceholder: 'Order id, payment id or method',
      caption: 'Payments, newest first',
      id: (p) => p.payment_id,
      time: (p) => p.timestamp,
      columns: [
        { label: 'Payment', render: (p) => shortId(p.payment_id) },
        { label: 'Time', render: (p) => time(p.timestamp) },
        { label: 'Order', render: (p) => orderLink(p.order_id) },
        { label: 'Method', render: (p) => p.method ?? '—' },
        { label: 'Amount', className: 'num', render: (p) => money(p.amount) },
        {
          label: 'Result',
          render: (p) => h('span', { class: 'stack' }, badge(p.status), p.failure_reason ? h('span', { class: 'muted small' }, p.failure_reason) : null),
        },
        { label: 'Kafka', className: 'col-opt', render: (p) => kafkaPosition(p.kafka) },
      ],
      matches: (p, f) => {
        if (f.status && p.status !== f.status) return false;
        if (!f.q) return true;
        const q = lower(f.q);
        return String(p.order_id).includes(q) || String(p.payment_id).includes(q) || has(p.method, q);
      },
      onEvent(frame, table) {
        if (frame.event_type !== 'payment.processed') return;
        const d = frame.data || {};
        table.upsert({
          payment_id: d.payment_id || frame.event_id,
          order_id: orderIdOf(frame),
          amount: d.amount,
          method: d.method ?? 'unknown',
          status: frame.payment_status,
          failure_reason: d.failure_reason ?? null,
          timestamp: frame.timestamp,
          kafka: { topic: frame.topic, partition: frame.partition, offset: frame.offset },
        });
      },
    });
  },
};

// --- deliveries ------------------------------------------------------------------------------

export const deliveriesPage = {
  title: 'Deliveries',
  nav: 'deliveries',
  mount(main, ctx) {
    main.append(
      pageHeader(
        'Deliveries',
        h('p', { class: 'lede' }, 'Every parcel, newest first, live from the ', h('code', {}, 'deliveries'), ` topic: ${rules.delivery_statuses.join(' → ')}.`),
      ),
    );
    return mountTable(main, ctx, {
      kind: 'deliveries',
      noun: ['delivery', 'deliveries'],
      endpoint: '/api/deliveries',
      statuses: rules.delivery_statuses,
      searchLabel: 'Search',
      searchPlaceholder: 'Order id, delivery id, address or carrier',
      caption: 'Deliveries, newest first',
      id: (d) => d.delivery_id,
      time: (d) => d.created_at,
      columns: [
        { label: 'Delivery', render: (d) => shortId(d.delivery_id) },
        { label: 'Created', render: (d) => time(d.created_at) },
        { label: 'Order', render: (d) => orderLink(d.order_id) },
        { label: 'Carrier', render: (d) => d.carrier ?? '—' },
        { label: 'Status', render: (d) => badge(d.status) },
        { label: 'Estimated', render: (d) => day(d.estimated_date) },
        { label: 'Updated', className: 'col-opt', render: (d) => time(d.updated_at) },
        { label: 'Address', className: 'col-opt', render: (d) => d.address ?? '' },
      ],
      matches: (d, f) => {
        if (f.status && d.status !== f.status) return false;
        if (!f.q) return true;
        const q = lower(f.q);
        return String(d.order_id).includes(q) || String(d.delivery_id).includes(q) || has(d.address, q) || has(d.carrier, q);
      },
      onEvent(frame, table) {
        if (!frame.event_type?.startsWith('delivery.')) return;
        const d = frame.data || {};
        const orderId = orderIdOf(frame);
        const id = d.delivery_id || `delivery-${orderId}`;
        const status = frame.delivery_status;
        if (!status) return;
        const kafka = { topic: frame.topic, partition: frame.partition, offset: frame.offset };
        if (table.has(id)) {
          const current = table.get(id);
          // Parcels only move forward along the server's delivery statuses.
          if (deliveryRank(rules, status) <= deliveryRank(rules, current.status)) return;
          const changes = { status, updated_at: frame.timestamp, kafka };
          if (d.carrier) changes.carrier = d.carrier;
          if (d.estimated_date) changes.estimated_date = d.estimated_date;
          table.patch(id, changes);
        } else if (frame.event_type === 'delivery.created' || deliveryRank(rules, status) === 0) {
          table.upsert({
            delivery_id: id,
            order_id: orderId,
            address: d.address ?? '',
            status,
            carrier: d.carrier ?? null,
            estimated_date: d.estimated_date ?? null,
            created_at: frame.timestamp,
            updated_at: frame.timestamp,
            kafka,
          });
        } else if (table.filters.status === status) {
          table.fetchAndInsert(`/api/deliveries/${encodeURIComponent(id)}`, (body) => body.delivery);
        }
      },
    });
  },
};
