// Unit tests of the dashboard's formatters (static/js/ui.js) that follow the shop's rules:
// amounts get the decimals GET /api/rules gives their currency. `node --test tests/js/*.test.mjs`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { importStatic } from './static-modules.mjs';

const rulesModule = await importStatic('rules.js');
const { money } = await importStatic('ui.js');

/** Reads a rules document through loadRules, as app.js does at start. */
async function load(t, doc) {
  t.mock.method(globalThis, 'fetch', () =>
    Promise.resolve(new Response(JSON.stringify(doc), { status: 200, headers: { 'content-type': 'application/json' } })),
  );
  return rulesModule.loadRules();
}

const format = (currency, decimals) =>
  new Intl.NumberFormat(undefined, { style: 'currency', currency, minimumFractionDigits: decimals, maximumFractionDigits: decimals });

test("money shows each currency with the decimals of the server's rules", async (t) => {
  await load(t, {
    order_statuses: [],
    payment_statuses: [],
    delivery_statuses: [],
    payment_methods: [],
    carriers: [],
    currencies: ['EUR', 'JPY'],
    topics: [],
    actions: {},
    next_delivery_status: {},
    at_or_past: {},
    retried_actions: {},
    stages: [],
    currency_decimals: { EUR: 2, JPY: 0 },
    amount_decimals: 3,
    default_currency: 'EUR',
  });
  assert.equal(money(12.5, 'EUR'), format('EUR', 2).format(12.5));
  assert.equal(money('1234.50', 'JPY'), format('JPY', 0).format(1234.5), 'no decimals where the rules give none');
  assert.equal(money(7, undefined), new Intl.NumberFormat(undefined, { minimumFractionDigits: 3, maximumFractionDigits: 3 }).format(7));
  assert.equal(money(null, 'EUR'), '—');
  assert.equal(money('lots', 'EUR'), 'lots');
});
