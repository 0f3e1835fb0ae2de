// The shop's rules as the server applies them, from one document: `GET /api/rules`, read once
// at start-up (app.js mounts no page before it is here). It names the order, payment and
// delivery statuses, the commands an order takes in each status (and which of them try again a
// step that failed), the status a delivery is advanced to, the stages of an order that goes
// well and which statuses count as having reached each status, and the shop's payment methods,
// carriers, currencies (with their decimals) and topics, so that the dashboard keeps no copy of
// any of them. What an event did comes with its live frame
// (`order_status`, `seq`, `payment_status`, `delivery_status`): pages show it as it is.

import { api } from './api.js';

/** The rules document, frozen; `null` until loadRules() has resolved. */
export let rules = null;

const LISTS = ['order_statuses', 'payment_statuses', 'delivery_statuses', 'payment_methods', 'carriers', 'currencies', 'topics'];
const MAPS = ['actions', 'next_delivery_status', 'at_or_past', 'retried_actions', 'currency_decimals'];

/** Reads the document from the server (once: later calls get the same one). */
export async function loadRules({ signal } = {}) {
  if (!rules) rules = checkRules(await api('/api/rules', { signal }));
  return rules;
}

/**
 * The document, checked and frozen: throws an Error that says what is missing, so that the
 * start-up notice can tell a server without the document from one that cannot be reached.
 */
export function checkRules(doc) {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('The server sent no rules document');
  for (const name of LISTS) {
    if (!Array.isArray(doc[name]) || !doc[name].every((s) => typeof s === 'string')) throw new Error(`The rules document has no list of ${name}`);
  }
  for (const name of MAPS) {
    if (!doc[name] || typeof doc[name] !== 'object' || Array.isArray(doc[name])) throw new Error(`The rules document has no ${name}`);
  }
  if (!Array.isArray(doc.stages) || !doc.stages.every((stage) => Array.isArray(stage) && stage.length > 0 && stage.every((s) => typeof s === 'string'))) {
    throw new Error('The rules document has no list of stages');
  }
  if (!Number.isInteger(doc.amount_decimals)) throw new Error('The rules document has no amount_decimals');
  if (typeof doc.default_currency !== 'string') throw new Error('The rules document has no default_currency');
  return deepFreeze(doc);
}

function deepFreeze(value) {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

const own = (map, key) => (map && Object.hasOwn(map, key) ? map[key] : undefined);

/** The commands (`pay`, `cancel`, `ship`, `advance`) an order in `status` takes; none for a status the document does not know. */
export const actionsFor = (doc, status) => own(doc.actions, status) || [];

/** Whether `status` is one the document knows and that takes no command any more (Delivered, Cancelled). */
export const isFinal = (doc, status) => Array.isArray(own(doc.actions, status)) && doc.actions[status].length === 0;

/** The commands that, in `status`, try again the step that failed and led there (`pay` after a declined payment). */
export const retriedActions = (doc, status) => own(doc.retried_actions, status) || [];

/** Whether `action` in `status` tries again a step that failed (a payment after a declined one). */
export const isRetry = (doc, status, action) => retriedActions(doc, status).includes(action);

/** How many orders of the `byStatus` counts reached `status`: those in a status at or past it. */
export function reached(doc, byStatus, status) {
  return (own(doc.at_or_past, status) || []).reduce((n, s) => n + (own(byStatus, s) ?? 0), 0);
}

/**
 * The lifecycle funnel of the `byStatus` counts. `stages`: one per stage of an order that goes
 * well, named by its first status, with how many orders reached it (`total` for the first: every
 * order), how many are in it now and the commands they wait for. `side`: the statuses off that
 * way, with their counts, whether they are over and whether they may be retried.
 */
export function funnelCounts(doc, byStatus, total) {
  const n = (s) => own(byStatus, s) ?? 0;
  const stages = doc.stages.map((statuses, i) => ({
    status: statuses[0],
    value: i === 0 ? total : reached(doc, byStatus, statuses[0]),
    waiting: statuses.reduce((sum, s) => sum + n(s), 0),
    actions: actionsFor(doc, statuses[0]),
  }));
  const onTheWay = new Set(doc.stages.flat());
  const side = doc.order_statuses
    .filter((s) => !onTheWay.has(s))
    .map((s) => ({ status: s, value: n(s), final: isFinal(doc, s), retried: retriedActions(doc, s).length > 0 }));
  return { stages, side };
}

/** How many decimals an amount in `currency` has (`amount_decimals` without a currency the document knows). */
export const decimalsOf = (doc, currency) => own(doc.currency_decimals, currency) ?? doc.amount_decimals;

/** The status a delivery in `status` is advanced to; `null` at the end (or for a status the document does not know). */
export const nextDeliveryStatus = (doc, status) => own(doc.next_delivery_status, status) || null;

/** Where a delivery status comes in a parcel's way (-1 when the document does not know it). */
export const deliveryRank = (doc, status) => doc.delivery_statuses.indexOf(status);

/**
 * Whether `next` (a live frame, or a row read again) is a newer state of an order than the
 * row `shown`: a higher `seq`, the number of the last event the server applied. A retried
 * duplicate carries its original's seq and a replayed frame its own, so neither is newer.
 */
export function isNewer(next, shown) {
  if (!Number.isFinite(next?.seq)) return false;
  return !Number.isFinite(shown?.seq) || next.seq > shown.seq;
}

/**
 * What a live frame changes in the order row it is about: the order's status as the server
 * has it right after the event, the event's number and time; `null` when the frame is not
 * newer than the row or says no status.
 */
export function orderRowChanges(frame, row) {
  if (!frame || !frame.order_status || !isNewer(frame, row)) return null;
  return { status: frame.order_status, seq: frame.seq, updated_at: frame.timestamp };
}
