// Unit tests of static/js/rules.js: reading the server's rules document (GET /api/rules) and
// the pure helpers the pages decide with. `node --test tests/js/*.test.mjs`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { importStatic } from './static-modules.mjs';

const rulesModule = await importStatic('rules.js');
const {
  checkRules,
  actionsFor,
  isFinal,
  retriedActions,
  isRetry,
  reached,
  funnelCounts,
  decimalsOf,
  nextDeliveryStatus,
  deliveryRank,
  isNewer,
  orderRowChanges,
  loadRules,
} = rulesModule;

/** The document as shopstream serves it (the shape of src/messages/api.rs). */
const document = () => ({
  order_statuses: ['Pending', 'Payment Failed', 'Paid', 'Shipped', 'In Transit', 'Out for Delivery', 'Delivered', 'Cancelled'],
  payment_statuses: ['SUCCESS', 'FAILED'],
  delivery_statuses: ['Shipped', 'In Transit', 'Out for Delivery', 'Delivered'],
  actions: {
    Pending: ['pay', 'cancel'],
    'Payment Failed': ['pay', 'cancel'],
    Paid: ['ship'],
    Shipped: ['advance'],
    'In Transit': ['advance'],
    'Out for Delivery': ['advance'],
    Delivered: [],
    Cancelled: [],
  },
  next_delivery_status: { Shipped: 'In Transit', 'In Transit': 'Out for Delivery', 'Out for Delivery': 'Delivered' },
  at_or_past: {
    Pending: ['Pending', 'Payment Failed', 'Paid', 'Shipped', 'In Transit', 'Out for Delivery', 'Delivered', 'Cancelled'],
    'Payment Failed': ['Payment Failed'],
    Paid: ['Paid', 'Shipped', 'In Transit', 'Out for Delivery', 'Delivered'],
    Shipped: ['Shipped', 'In Transit', 'Out for Delivery', 'Delivered'],
    'In Transit': ['In Transit', 'Out for Delivery', 'Delivered'],
    'Out for Delivery': ['Out for Delivery', 'Delivered'],
    Delivered: ['Delivered'],
    Cancelled: ['Cancelled'],
  },
  stages: [['Pending'], ['Paid'], ['Shipped', 'In Transit', 'Out for Delivery'], ['Delivered']],
  retried_actions: { 'Payment Failed': ['pay'] },
  payment_methods: ['Credit Card', 'PayPal', 'Bank Transfer', 'Apple Pay', 'Google Pay'],
  carriers: ['Colissimo', 'Chronopost', 'DHL', 'UPS', 'DPD'],
  currencies: ['EUR', 'USD', 'JPY'],
  currency_decimals: { EUR: 2, USD: 2, JPY: 2 },
  amount_decimals: 2,
  default_currency: 'EUR',
  topics: ['orders', 'payments', 'deliveries'],
});

const doc = checkRules(document());

test("checkRules accepts the server's document and freezes it", () => {
  assert.deepEqual(doc, document());
  assert.ok(Object.isFrozen(doc) && Object.isFrozen(doc.actions.Pending) && Object.isFrozen(doc.carriers));
});

test('checkRules says what a document lacks', () => {
  assert.throws(() => checkRules(null), /no rules document/);
  assert.throws(() => checkRules([]), /no rules document/);
  const { carriers, ...noCarriers } = document();
  assert.throws(() => checkRules(noCarriers), /no list of carriers/);
  assert.throws(() => checkRules({ ...document(), actions: [] }), /no actions/);
  assert.throws(() => checkRules({ ...document(), currencies: ['EUR', 1] }), /no list of currencies/);
  assert.throws(() => checkRules({ ...document(), default_currency: null }), /default_currency/);
  assert.throws(() => checkRules({ ...document(), at_or_past: null }), /no at_or_past/);
  assert.throws(() => checkRules({ ...document(), stages: [['Pending'], []] }), /no list of stages/);
  assert.throws(() => checkRules({ ...document(), stages: 'Pending' }), /no list of stages/);
  assert.throws(() => checkRules({ ...document(), amount_decimals: '2' }), /amount_decimals/);
});

test('isRetry: a payment after a declined one tries again, as the document says', () => {
  assert.deepEqual(retriedActions(doc, 'Payment Failed'), ['pay']);
  assert.equal(isRetry(doc, 'Payment Failed', 'pay'), true);
  assert.equal(isRetry(doc, 'Payment Failed', 'cancel'), false);
  assert.equal(isRetry(doc, 'Pending', 'pay'), false);
  assert.equal(isRetry(doc, 'hasOwnProperty', 'pay'), false);
  // Another shop's rules: whatever the document names is what the page offers as a retry.
  const other = checkRules({ ...document(), retried_actions: { Pending: ['pay'] } });
  assert.equal(isRetry(other, 'Pending', 'pay'), true);
  assert.equal(isRetry(other, 'Payment Failed', 'pay'), false);
});

/** `by_status` as GET /api/stats gives it. */
const byStatus = {
  Pending: 4,
  'Payment Failed': 2,
  Paid: 3,
  Shipped: 1,
  'In Transit': 2,
  'Out for Delivery': 1,
  Delivered: 5,
  Cancelled: 1,
};

test('reached counts the orders at or past a status', () => {
  assert.equal(reached(doc, byStatus, 'Paid'), 3 + 1 + 2 + 1 + 5);
  assert.equal(reached(doc, byStatus, 'Shipped'), 1 + 2 + 1 + 5);
  assert.equal(reached(doc, byStatus, 'Delivered'), 5);
  assert.equal(reached(doc, byStatus, 'Payment Failed'), 2, 'off the way: itself alone');
  assert.equal(reached(doc, {}, 'Paid'), 0);
  assert.equal(reached(doc, byStatus, 'Lost at sea'), 0);
});

test("funnelCounts follows the document's stages: reached, waiting, and the statuses off the way", () => {
  const { stages, side } = funnelCounts(doc, byStatus, 19);
  assert.deepEqual(stages, [
    { status: 'Pending', value: 19, waiting: 4, actions: ['pay', 'cancel'] },
    { status: 'Paid', value: 12, waiting: 3, actions: ['ship'] },
    { status: 'Shipped', value: 9, waiting: 4, actions: ['advance'] },
    { status: 'Delivered', value: 5, waiting: 5, actions: [] },
  ]);
  assert.deepEqual(side, [
    { status: 'Payment Failed', value: 2, final: false, retried: true },
    { status: 'Cancelled', value: 1, final: true, retried: false },
  ]);
  // A shop whose parcels are delivered straight from payment: two stages fewer, no code change.
  const direct = checkRules({
    ...document(),
    stages: [['Pending'], ['Paid'], ['Delivered']],
    at_or_past: { ...document().at_or_past, Paid: ['Paid', 'Delivered'] },
  });
  assert.deepEqual(
    funnelCounts(direct, { Paid: 1, Delivered: 2 }, 3).stages.map((s) => [s.status, s.value, s.waiting]),
    [
      ['Pending', 3, 0],
      ['Paid', 3, 1],
      ['Delivered', 2, 2],
    ],
  );
});

test('decimalsOf gives each currency its decimals, and the API amounts theirs', () => {
  const yen = checkRules({ ...document(), currency_decimals: { EUR: 2, JPY: 0 } });
  assert.equal(decimalsOf(yen, 'EUR'), 2);
  assert.equal(decimalsOf(yen, 'JPY'), 0);
  assert.equal(decimalsOf(yen, undefined), 2, 'an amount without a currency: amount_decimals');
  assert.equal(decimalsOf(yen, 'XTS'), 2);
  assert.equal(decimalsOf(yen, 'constructor'), 2);
});

test('actionsFor and isFinal read the commands of each status', () => {
  assert.deepEqual(actionsFor(doc, 'Pending'), ['pay', 'cancel']);
  assert.deepEqual(actionsFor(doc, 'Paid'), ['ship']);
  assert.deepEqual(actionsFor(doc, 'Delivered'), []);
  assert.deepEqual(actionsFor(doc, 'Lost at sea'), []);
  assert.deepEqual(actionsFor(doc, undefined), []);
  assert.deepEqual(actionsFor(doc, 'toString'), [], 'a name from Object.prototype is no status');
  assert.equal(isFinal(doc, 'Delivered'), true);
  assert.equal(isFinal(doc, 'Cancelled'), true);
  assert.equal(isFinal(doc, 'Shipped'), false);
  assert.equal(isFinal(doc, 'Lost at sea'), false, 'an unknown status is not said to be over');
});

test('nextDeliveryStatus and deliveryRank follow the delivery statuses', () => {
  assert.equal(nextDeliveryStatus(doc, 'Shipped'), 'In Transit');
  assert.equal(nextDeliveryStatus(doc, 'Out for Delivery'), 'Delivered');
  assert.equal(nextDeliveryStatus(doc, 'Delivered'), null);
  assert.equal(nextDeliveryStatus(doc, 'constructor'), null);
  assert.equal(deliveryRank(doc, 'Shipped'), 0);
  assert.ok(deliveryRank(doc, 'Delivered') > deliveryRank(doc, 'In Transit'));
  assert.equal(deliveryRank(doc, 'in_transit'), -1, "spellings are the server's business: frames carry delivery_status");
});

test('isNewer: a higher seq is a newer state; a duplicate or an older frame is not', () => {
  assert.equal(isNewer({ seq: 8 }, { seq: 7 }), true);
  assert.equal(isNewer({ seq: 7 }, { seq: 7 }), false);
  assert.equal(isNewer({ seq: 6 }, { seq: 7 }), false);
  assert.equal(isNewer({ seq: 1 }, {}), true, 'a row without seq takes any numbered state');
  assert.equal(isNewer({}, { seq: 7 }), false);
  assert.equal(isNewer({ seq: '9' }, { seq: 7 }), false, 'seq is a number');
  assert.equal(isNewer(undefined, { seq: 7 }), false);
});

test('orderRowChanges takes the status the server reports, only from a newer frame', () => {
  const row = { order_id: 'o-1', status: 'Paid', seq: 12, updated_at: '2025-06-02T09:00:00Z' };
  const frame = { event_type: 'delivery.created', order_status: 'Shipped', seq: 15, timestamp: '2025-06-02T09:01:00Z' };
  assert.deepEqual(orderRowChanges(frame, row), { status: 'Shipped', seq: 15, updated_at: '2025-06-02T09:01:00Z' });
  // A replayed or retried frame, and a late one: nothing changes.
  assert.equal(orderRowChanges({ ...frame, seq: 12 }, row), null);
  assert.equal(orderRowChanges({ ...frame, seq: 3, order_status: 'Pending' }, row), null);
  // A newer frame that left the status as it was (an anomaly, say) still moves seq on.
  assert.deepEqual(orderRowChanges({ ...frame, order_status: 'Paid' }, row), { status: 'Paid', seq: 15, updated_at: frame.timestamp });
  // A frame of an order with no status yet (its payment read before it) says nothing.
  assert.equal(orderRowChanges({ ...frame, order_status: null }, row), null);
  // Whatever the event type: no lifecycle rule in the page decides, the server's status does.
  assert.deepEqual(orderRowChanges({ event_type: 'payment.processed', order_status: 'Cancelled', seq: 20, timestamp: 't' }, row), {
    status: 'Cancelled',
    seq: 20,
    updated_at: 't',
  });
});

test('loadRules reads GET /api/rules once, and reports a server it cannot reach', async (t) => {
  const calls = [];
  let answer = () => Promise.reject(new TypeError('fetch failed'));
  t.mock.method(globalThis, 'fetch', (path, options) => {
    calls.push([path, options.method]);
    return answer();
  });
  await assert.rejects(loadRules(), (error) => error.name === 'ApiError' && error.code === 'network');
  assert.equal(rulesModule.rules, null, 'no document after a failure');

  answer = () => Promise.resolve(new Response(JSON.stringify({ error: { code: 'not_found', message: 'no such route' } }), { status: 404 }));
  await assert.rejects(loadRules(), (error) => error.status === 404);
  assert.equal(rulesModule.rules, null);

  answer = () => Promise.resolve(new Response(JSON.stringify(document()), { status: 200, headers: { 'content-type': 'application/json' } }));
  const loaded = await loadRules();
  assert.deepEqual(loaded, document());
  assert.equal(rulesModule.rules, loaded, "pages see the document through the module's export");
  assert.equal(await loadRules(), loaded);
  assert.deepEqual(
    calls,
    [
      ['/api/rules', 'GET'],
      ['/api/rules', 'GET'],
      ['/api/rules', 'GET'],
    ],
    'read once it has been read',
  );
});

test('no page, chart or formatter decides by an order status name: the document does', () => {
  const dir = new URL('../../static/js/', import.meta.url);
  const files = ['charts.js', 'ui.js', 'table.js', 'live.js', ...readdirSync(new URL('pages/', dir)).map((f) => `pages/${f}`)];
  const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  for (const file of files) {
    // Comments may name statuses; code may not compare with one, look one up or count one.
    const code = readFileSync(new URL(file, dir), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    for (const status of document().order_statuses) {
      const quoted = `'${escape(status)}'`;
      const uses = [new RegExp(`[=!]==\\s*${quoted}`), new RegExp(`${quoted}\\s*[=!]==`), new RegExp(`[[(]\\s*${quoted}\\s*[\\])]`)];
      if (!status.includes(' ')) uses.push(new RegExp(`\\.${status}\\b`));
      for (const use of uses) assert.doesNotMatch(code, use, `${file} decides by the status ${status}`);
    }
  }
});
