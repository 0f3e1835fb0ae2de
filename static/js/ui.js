// Small DOM and formatting helpers shared by every page. No framework: `h()` builds elements,
// the formatters follow the browser's locale (Intl), and `announce()` feeds the polite live
// region that screen readers read out.

import { rules, decimalsOf } from './rules.js';

/**
 * Builds an element. `attrs`: `class`, `text`, `on<Event>` handlers, `dataset`, boolean
 * attributes (`true` sets, `false`/`null` omits) and any other attribute as a string.
 * Children: nodes, strings, numbers, arrays of them; `null`/`false` are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const svg = SVG_TAGS.has(tag);
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'text') el.textContent = value;
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2).toLowerCase(), value);
    // On inputs the attribute is the default value too, which form.reset() goes back to.
    else if (name === 'value' && !svg) {
      if (tag === 'input') el.setAttribute('value', value);
      else el.value = value;
    } else if (name === 'checked' || name === 'selected') el[name] = Boolean(value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

const SVG_TAGS = new Set(['svg', 'g', 'rect', 'line', 'path', 'text', 'title', 'desc', 'polyline', 'circle']);

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces every child of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// --- formatting ------------------------------------------------------------------------------

const moneyFormats = new Map();

/**
 * An amount as the API gives it (a JSON number), with its currency when known, and as many
 * decimals as the shop's rules give that currency (`decimalsOf`).
 */
export function money(amount, currency) {
  if (amount === null || amount === undefined || amount === '') return '—';
  const n = typeof amount === 'number' ? amount : Number(amount);
  if (!Number.isFinite(n)) return String(amount);
  const decimals = rules ? decimalsOf(rules, currency) : undefined;
  const key = `${currency || ''}/${decimals}`;
  let format = moneyFormats.get(key);
  if (!format) {
    const options = decimals === undefined ? {} : { minimumFractionDigits: decimals, maximumFractionDigits: decimals };
    try {
      format = currency ? new Intl.NumberFormat(undefined, { style: 'currency', currency, ...options }) : new Intl.NumberFormat(undefined, options);
    } catch {
      format = new Intl.NumberFormat(undefined, options);
    }
    moneyFormats.set(key, format);
  }
  const text = format.format(n);
  return currency && !format.resolvedOptions().currency ? `${text} ${currency}` : text;
}

const integer = new Intl.NumberFormat();
export const count = (n) => (n === null || n === undefined ? '—' : integer.format(n));

const percentFormat = new Intl.NumberFormat(undefined, { style: 'percent', maximumFractionDigits: 1 });
export const percent = (ratio) => (ratio === null || ratio === undefined ? '—' : percentFormat.format(ratio));

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });
const shortTime = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });

/** Parses an RFC 3339 time; `null` when absent or unreadable. */
export function parseTime(iso) {
  if (!iso) return null;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** A `<time>` in local time: the time alone for today, date and time otherwise. */
export function time(iso) {
  const d = parseTime(iso);
  if (!d) return h('span', { class: 'muted' }, '—');
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return h('time', { datetime: iso, title: dateTime.format(d) }, sameDay ? timeOnly.format(d) : dateTime.format(d));
}

export const fullTime = (iso) => {
  const d = parseTime(iso);
  return d ? dateTime.format(d) : '—';
};
export const hhmm = (d) => shortTime.format(d);
export const day = (isoDate) => {
  if (!isoDate) return '—';
  // A plain date (2024-02-05) is a calendar day, not an instant: read it as local noon.
  const d = new Date(`${isoDate}T12:00:00`);
  return Number.isNaN(d.getTime()) ? isoDate : dateOnly.format(d);
};

/** "3 s ago", "2 min ago": for lag and last-seen figures. */
export function ago(iso) {
  const d = parseTime(iso);
  if (!d) return '—';
  const seconds = Math.max(0, (Date.now() - d.getTime()) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return fullTime(iso);
}

export function seconds(s) {
  if (s === null || s === undefined) return '—';
  if (s < 1) return s === 0 ? '0 s' : `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(1)} s`;
  return `${Math.round(s / 60)} min`;
}

/** First 8 characters of a UUID, the whole id in the tooltip. */
export function shortId(id) {
  return h('code', { class: 'id', title: id }, String(id ?? '').slice(0, 8));
}

export const slug = (s) =>
  String(s ?? '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-');

/** A status pill; colour and text both say it (colour alone is not enough). */
export function badge(status) {
  if (!status) return h('span', { class: 'badge' }, 'Unknown');
  return h('span', { class: `badge status-${slug(status)}` }, status);
}

export function anomalyFlag(n, text) {
  if (!n) return null;
  const label = text || (n === 1 ? '1 anomaly' : `${n} anomalies`);
  return h('span', { class: 'anomaly-flag', title: label }, h('span', { 'aria-hidden': 'true' }, '⚠ '), label);
}

export function orderLink(id, label) {
  return h('a', { href: `/orders/${encodeURIComponent(id)}`, 'aria-label': `Order ${id}` }, label ?? shortId(id));
}

// --- announcements ---------------------------------------------------------------------------

let announceTimer = null;
/** Says `text` through the polite live region (replacing what was waiting). */
export function announce(text) {
  const region = document.getElementById('announcer');
  if (!region) return;
  clearTimeout(announceTimer);
  region.textContent = '';
  // A fresh text node after a tick, so that repeating the same sentence is read again.
  announceTimer = setTimeout(() => {
    region.textContent = text;
  }, 50);
}

/** Collects "new X" counts and announces them at most every `interval` ms. */
export function batchAnnouncer(interval = 5000) {
  const counts = new Map();
  let timer = null;
  const flush = () => {
    timer = null;
    if (!counts.size) return;
    announce([...counts].map(([what, n]) => `${n} ${what}`).join(', '));
    counts.clear();
  };
  return {
    add(what, n = 1) {
      counts.set(what, (counts.get(what) || 0) + n);
      if (!timer) timer = setTimeout(flush, interval);
    },
    stop() {
      clearTimeout(timer);
      counts.clear();
    },
  };
}

// --- timing ----------------------------------------------------------------------------------

/** Calls `fn` at most once per `ms`, always once more after the last call (trailing). */
export function throttle(fn, ms) {
  let last = 0;
  let timer = null;
  const run = () => {
    timer = null;
    last = Date.now();
    fn();
  };
  const throttled = () => {
    if (timer) return;
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(run, wait);
  };
  throttled.cancel = () => {
    clearTimeout(timer);
    timer = null;
  };
  return throttled;
}

export function debounce(fn, ms) {
  let timer = null;
  const debounced = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}

/** The page's heading, focusable so that navigation can move focus to it. */
export function pageHeader(title, ...extra) {
  return h('div', { class: 'page-header' }, h('h1', { tabindex: '-1' }, title), ...extra);
}

/** A message box: `kind` is info, error or success. Errors are alerts. */
export function notice(kind, ...content) {
  return h('div', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, ...content);
}
