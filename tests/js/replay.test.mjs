// Unit tests of static/js/replay.js: what the dashboard's progress bar shows of /readyz while
// the log is replayed at start. `node --test tests/js/*.test.mjs`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { importStatic } from './static-modules.mjs';

const { describeReplay, duration } = await importStatic('replay.js');

/** /readyz while catching up (the shape of src/messages/api.rs, `Replay`). */
const catchingUp = (replay = {}) => ({
  status: 'ready',
  caught_up: false,
  replay: {
    records_done: 4500,
    records_total: 12000,
    total_known: true,
    percent: 37.5,
    records_per_second: 1499.6,
    eta_seconds: 5,
    elapsed_seconds: 3.001,
    partitions_done: 4,
    partitions: 9,
    ...replay,
  },
});

test('nothing to show once caught up, or before the replay started', () => {
  assert.equal(describeReplay({ status: 'ready', caught_up: true, replay: { records_done: 1, records_total: 1 } }), null);
  assert.equal(describeReplay({ status: 'ready', caught_up: false }), null);
  assert.equal(describeReplay(null), null);
  assert.equal(describeReplay({ status: 'unavailable', error: { code: 'kafka_unavailable' } }), null);
});

test('while catching up: the share done, records done out of the total, the rate and the time left', () => {
  const shown = describeReplay(catchingUp());
  assert.equal(shown.percent, 37.5);
  assert.equal(shown.done, 4500);
  assert.equal(shown.total, 12000);
  assert.match(shown.text, /^4.500 of 12.000 records · 1.500 records\/s · about 5 s left$/);
});

test('a total still growing is marked, and an unknown time left is said', () => {
  const shown = describeReplay(catchingUp({ total_known: false, eta_seconds: null, records_per_second: null }));
  assert.match(shown.text, /^4.500 of 12.000\+ records · estimating the time left$/);
});

test('the bar never leaves 0 to 100', () => {
  assert.equal(describeReplay(catchingUp({ percent: 140 })).percent, 100);
  assert.equal(describeReplay(catchingUp({ percent: -3 })).percent, 0);
  assert.equal(describeReplay(catchingUp({ percent: 'x' })).percent, 0);
});

test('times left read as people say them', () => {
  assert.equal(duration(0), '0 s');
  assert.equal(duration(59.4), '59 s');
  assert.equal(duration(600), '10 min');
  assert.equal(duration(7500), '2 h 5 min');
  assert.equal(duration(7200), '2 h');
  assert.equal(duration(null), '0 s');
});
