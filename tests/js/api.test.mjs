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

test('legalMove follows the lifecycle and never moves a status back', () => {
  assert.equal(api.legalMove(undefined, 'Pending'), true);
  assert.equal(api.legalMove('Pending', 'Paid'), true);
  assert.equal(api.legalMove('Payment Failed', 'Paid'), true);
  assert.equal(api.legalMove('Paid', 'Shipped'), true);
  assert.equal(api.legalMove('Shipped', 'Delivered'), true);
  assert.equal(api.legalMove('In Transit', 'Shipped'), false);
  assert.equal(api.legalMove('Paid', 'Cancelled'), false);
  assert.equal(api.legalMove('Pending', 'Shipped'), false);
  assert.equal(api.legalMove('Delivered', 'Cancelled'), false);
  assert.equal(api.legalMove('Paid', 'Paid'), false);
});

test('statusFromEvent reads what an event says of the order', () => {
  assert.equal(api.statusFromEvent({ event_type: 'order.created', data: {} }), 'Pending');
  assert.equal(api.statusFromEvent({ event_type: 'order.cancelled' }), 'Cancelled');
  assert.equal(api.statusFromEvent({ event_type: 'payment.processed', data: { status: 'SUCCESS' } }), 'Paid');
  assert.equal(api.statusFromEvent({ event_type: 'payment.processed', data: { status: 'FAILED' } }), 'Payment Failed');
  assert.equal(api.statusFromEvent({ event_type: 'delivery.updated', data: { status: 'in_transit' } }), 'In Transit');
  assert.equal(api.statusFromEvent({ event_type: 'something.else', data: {} }), null);
});

test('deliveryStatus accepts the spellings foreign producers use', () => {
  assert.equal(api.deliveryStatus('OUT_FOR_DELIVERY'), 'Out for Delivery');
  assert.equal(api.deliveryStatus('Delivered'), 'Delivered');
  assert.equal(api.deliveryStatus('lost'), null);
  assert.equal(api.deliveryStatus(undefined), null);
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
