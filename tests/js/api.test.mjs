// Unit tests of the dashboard's pure helpers (static/js/api.js), with Node's own test runner:
// `node --test tests/js/*.test.mjs`. The module is imported through a data: URL (see
// static-modules.mjs), which Node always reads as an ES module.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { importStatic } from './static-modules.mjs';

const api = await importStatic('api.js');

test('query leaves out empty values and encodes the rest', () => {
  assert.equal(api.query({}), '');
  assert.equal(api.query({ status: 'In Transit', q: '', cursor: null, limit: 50 }), '?status=In+Transit&limit=50');
});

test("api.js keeps no copy of the shop's vocabulary or lifecycle: it comes from /api/rules", () => {
  for (const name of [
    'ORDER_STATUSES',
    'PAYMENT_STATUSES',
    'DELIVERY_STATUSES',
    'PAYMENT_METHODS',
    'CARRIERS',
    'CURRENCIES',
    'TOPICS',
    'legalMove',
    'statusFromEvent',
    'deliveryStatus',
  ]) {
    assert.equal(api[name], undefined, `api.js still exports ${name}`);
  }
});

test('micros and cursorAfter keep the microseconds the server pages by', () => {
  assert.equal(api.micros('1970-01-01T00:00:01.000002Z'), 1_000_002);
  assert.equal(api.micros('2025-06-02T09:00:00Z'), Date.parse('2025-06-02T09:00:00Z') * 1000);
  assert.ok(Number.isNaN(api.micros('yesterday')));
  assert.equal(api.cursorAfter('1970-01-01T00:00:00.5Z', 'o-1'), '500000_o-1');
  assert.equal(api.cursorAfter('not a time', 'o-1'), null);
});

test('ApiError carries the code, the message and the fields of an error body', () => {
  const error = new api.ApiError(422, {
    error: { code: 'validation_failed', message: 'quantity: must be between 1 and 1000', field: 'quantity', fields: [{ field: 'quantity' }] },
  });
  assert.equal(error.status, 422);
  assert.equal(error.code, 'validation_failed');
  assert.equal(error.field, 'quantity');
  assert.equal(error.fields.length, 1);
  const offline = new api.ApiError(0, null);
  assert.equal(offline.code, 'network');
  assert.equal(offline.message, 'The server cannot be reached');
});
