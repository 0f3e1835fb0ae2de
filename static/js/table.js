// A live, filtered, paged table of orders, payments or deliveries.
//
// Rows are kept newest first by the same key the API sorts on (the row's time, then its id).
// The first page comes from the API; live events then insert new rows (fading in) or update
// existing ones. "Load older" pages back through the API's cursor. At most MAX_ROWS rows are
// kept: live rows push the oldest out at the bottom; paging back pushes the newest out at the
// top, and the table then stops inserting live rows and offers "Show newest" instead.

import { api, query, isAbort, cursorAfter, micros } from './api.js';
import { h, notice, count, batchAnnouncer, debounce } from './ui.js';

export const MAX_ROWS = 200;
const PAGE = 50;

/**
 * cfg: {
 *   kind: 'orders', noun: ['order', 'orders'], endpoint, statuses: [...], statusLabel,
 *   searchLabel, searchPlaceholder, caption,
 *   id(item), time(item),
 *   columns: [{ label, render(item), className }],
 *   matches(item, filters),
 *   stale(item, shown)     // optional: whether an item read again is older than the row shown
 *   onEvent(frame, table)  // uses table.upsert / table.patch / table.has / table.get / table.refresh / table.fetchAndInsert
 * }
 */
export function mountTable(container, ctx, cfg) {
  const params = new URLSearchParams(location.search);
  const filters = { status: params.get('status') || '', q: params.get('q') || '' };
  const rows = []; // { id, key, item, tr }
  const byId = new Map();
  let nextCursor = null;
  let hasOlder = false;
  let paused = false; // newest rows were dropped while paging back
  let newerWaiting = 0;
  let loading = null; // AbortController of the running list request
  let initialLoaded = false;
  let buffered = [];
  const fetching = new Set();
  const announcer = batchAnnouncer();

  // --- structure -----------------------------------------------------------------------------
  const statusId = `${cfg.kind}-status`;
  const searchId = `${cfg.kind}-search`;
  const statusSelect = h(
    'select',
    { id: statusId, name: 'status' },
    h('option', { value: '' }, 'All statuses'),
    cfg.statuses.map((s) => h('option', { value: s, selected: s === filters.status }, s)),
  );
  const searchInput = h('input', {
    id: searchId,
    name: 'q',
    type: 'search',
    value: filters.q,
    placeholder: cfg.searchPlaceholder,
    autocomplete: 'off',
    spellcheck: 'false',
  });
  const summary = h('p', { class: 'table-summary muted', role: 'status' });
  const showNewest = h('button', { type: 'button', class: 'btn btn-small', hidden: true, onClick: () => reload() });
  const tbody = h('tbody', { role: 'rowgroup' });
  const table = h(
    'table',
    { class: `data-table cards table-${cfg.kind}`, role: 'table' },
    h('caption', { class: 'visually-hidden' }, cfg.caption),
    h(
      'thead',
      { role: 'rowgroup' },
      h(
        'tr',
        { role: 'row' },
        cfg.columns.map((c) => h('th', { scope: 'col', class: c.className, role: 'columnheader' }, c.label)),
      ),
    ),
    tbody,
  );
  const empty = h('p', { class: 'empty muted', hidden: true });
  const olderButton = h('button', { type: 'button', class: 'btn', hidden: true, onClick: () => loadOlder() }, 'Load older');
  const errorBox = h('div', { class: 'table-error' });

  const form = h(
    'form',
    {
      class: 'filters',
      role: 'search',
      'aria-label': `Filter ${cfg.noun[1]}`,
      onSubmit: (e) => {
        e.preventDefault();
        applyFilters();
      },
    },
    h('div', { class: 'field' }, h('label', { for: statusId }, cfg.statusLabel || 'Status'), statusSelect),
    h('div', { class: 'field field-grow' }, h('label', { for: searchId }, cfg.searchLabel), searchInput),
    h('div', { class: 'field field-actions' }, showNewest),
  );
  container.append(
    form,
    errorBox,
    h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': cfg.caption }, table),
    empty,
    h('div', { class: 'table-footer' }, summary, olderButton),
  );

  statusSelect.addEventListener('change', () => applyFilters());
  const searchChanged = debounce(() => applyFilters(), 300);
  searchInput.addEventListener('input', searchChanged);

  function applyFilters() {
    const status = statusSelect.value;
    const q = searchInput.value.trim();
    if (status === filters.status && q === filters.q && initialLoaded) return;
    filters.status = status;
    filters.q = q;
    const url = new URL(location.href);
    for (const [k, v] of Object.entries(filters)) {
      if (v) url.searchParams.set(k, v);
      else url.searchParams.delete(k);
    }
    history.replaceState(history.state, '', url);
    reload();
  }

  // --- rows ----------------------------------------------------------------------------------
  const sortKey = (item) => ({ t: micros(cfg.time(item)), id: String(cfg.id(item)) });
  /** Whether a is newer than b (comes first). */
  const newer = (a, b) => (a.t !== b.t ? a.t > b.t || Number.isNaN(b.t) : a.id > b.id);

  function renderRow(entry, flash) {
    // Explicit roles: on phones the rows are laid out as cards (CSS display changes), and the
    // roles keep them a table for screen readers.
    const tr = h(
      'tr',
      { role: 'row', dataset: { id: entry.id } },
      cfg.columns.map((c, i) =>
        h(
          i === 0 ? 'th' : 'td',
          {
            class: c.className,
            scope: i === 0 ? 'row' : null,
            role: i === 0 ? 'rowheader' : 'cell',
            'data-label': c.label,
          },
          c.render(entry.item),
        ),
      ),
    );
    if (flash) tr.classList.add(flash);
    if (entry.tr) entry.tr.replaceWith(tr);
    entry.tr = tr;
    return tr;
  }

  /** Inserts at its sorted place; returns false when it belongs below what is loaded. */
  function insert(item, flash) {
    const id = String(cfg.id(item));
    const key = sortKey(item);
    let at = 0;
    while (at < rows.length && newer(rows[at].key, key)) at += 1;
    if (at === rows.length && hasOlder) return false; // older than the bottom: "Load older" brings it
    const entry = { id, key, item, tr: null };
    renderRow(entry, flash);
    tbody.insertBefore(entry.tr, rows[at] ? rows[at].tr : null);
    rows.splice(at, 0, entry);
    byId.set(id, entry);
    return true;
  }

  function remove(entry) {
    entry.tr.remove();
    byId.delete(entry.id);
  }

  /** Drops the oldest rows past MAX_ROWS; paging then goes on right after the last one kept. */
  function trimBottom() {
    if (rows.length <= MAX_ROWS) return;
    for (const entry of rows.splice(MAX_ROWS)) remove(entry);
    const last = rows[rows.length - 1];
    nextCursor = cursorAfter(cfg.time(last.item), last.id);
    hasOlder = nextCursor !== null;
  }

  function trimTop() {
    if (rows.length <= MAX_ROWS) return;
    for (const entry of rows.splice(0, rows.length - MAX_ROWS)) remove(entry);
    paused = true;
  }

  const api_ = {
    has: (id) => byId.has(String(id)),
    get: (id) => byId.get(String(id))?.item,
    filters,
    /** A new or changed item from a live event. */
    upsert(item, { insertNew = true } = {}) {
      const id = String(cfg.id(item));
      const entry = byId.get(id);
      if (entry) {
        entry.item = { ...entry.item, ...item };
        renderRow(entry, 'row-updated');
        return;
      }
      if (!insertNew || !cfg.matches(item, filters)) return;
      if (paused) {
        newerWaiting += 1;
        updateFooter();
        return;
      }
      if (insert(item, 'row-new')) {
        trimBottom();
        announcer.add(`new ${cfg.noun[1]}`);
        updateFooter();
      }
    },
    /** Changes fields of a row that is shown; `false` when it is not. */
    patch(id, changes) {
      const entry = byId.get(String(id));
      if (!entry) return false;
      entry.item = { ...entry.item, ...changes };
      renderRow(entry, 'row-updated');
      updateFooter();
      return true;
    },
    /** Reads a shown row again (an event the page cannot fold itself, e.g. an anomaly). */
    refresh(id, path, pick) {
      if (!byId.has(String(id)) || fetching.has(path) || fetching.size >= 8) return;
      fetching.add(path);
      api(path, { signal: ctx.signal })
        .then((body) => {
          const item = pick(body);
          const shown = byId.get(String(id));
          // A live event may have moved the row on while the request was on its way.
          if (item && shown && !cfg.stale?.(item, shown.item)) api_.patch(id, item);
        })
        .catch(() => {})
        .finally(() => fetching.delete(path));
    },
    /** Reads one item (a row not shown that now matches the filters) and inserts it. */
    fetchAndInsert(path, pick) {
      if (fetching.has(path) || fetching.size >= 8 || paused) return;
      fetching.add(path);
      api(path, { signal: ctx.signal })
        .then((body) => {
          const item = pick(body);
          if (item && !byId.has(String(cfg.id(item))) && cfg.matches(item, filters) && insert(item, 'row-new')) {
            trimBottom();
            updateFooter();
          }
        })
        .catch(() => {})
        .finally(() => fetching.delete(path));
    },
  };

  // --- loading -------------------------------------------------------------------------------
  async function reload() {
    loading?.abort();
    const controller = new AbortController();
    loading = controller;
    ctx.signal.addEventListener('abort', () => controller.abort(), { once: true });
    errorBox.replaceChildren();
    table.setAttribute('aria-busy', 'true');
    try {
      const page = await api(`${cfg.endpoint}${query({ status: filters.status, q: filters.q, limit: PAGE })}`, { signal: controller.signal });
      if (loading !== controller) return;
      // The status filter in the server's spelling (`FAILED` for `?status=failed`): rows that
      // arrive live are matched against it as the server matched the page.
      if (page.status && page.status !== filters.status) {
        filters.status = page.status;
        statusSelect.value = page.status;
      }
      for (const entry of rows.splice(0)) remove(entry);
      hasOlder = false;
      for (const item of page.items) insert(item, null);
      nextCursor = page.next_cursor;
      hasOlder = Boolean(nextCursor);
      paused = false;
      newerWaiting = 0;
      initialLoaded = true;
      // Events that arrived while the first page was on its way.
      const waiting = buffered;
      buffered = [];
      for (const frame of waiting) cfg.onEvent(frame, api_);
    } catch (error) {
      if (isAbort(error)) return;
      errorBox.replaceChildren(notice('error', `Cannot load ${cfg.noun[1]}: ${error.message}`));
    } finally {
      if (loading === controller) {
        loading = null;
        table.removeAttribute('aria-busy');
      }
      updateFooter();
    }
  }

  async function loadOlder() {
    if (!nextCursor || loading) return;
    const controller = new AbortController();
    loading = controller;
    ctx.signal.addEventListener('abort', () => controller.abort(), { once: true });
    const hadFocus = document.activeElement === olderButton;
    olderButton.disabled = true;
    try {
      const page = await api(`${cfg.endpoint}${query({ status: filters.status, q: filters.q, limit: PAGE, cursor: nextCursor })}`, {
        signal: controller.signal,
      });
      if (loading !== controller) return;
      const firstNew = rows.length;
      hasOlder = false;
      for (const item of page.items) {
        if (!byId.has(String(cfg.id(item)))) insert(item, null);
      }
      nextCursor = page.next_cursor;
      hasOlder = Boolean(nextCursor);
      const first = rows[firstNew];
      trimTop();
      // Keep the keyboard where the reader is: on the first row that came in.
      if (first && byId.has(first.id) && hadFocus) first.tr.querySelector('a')?.focus();
    } catch (error) {
      if (!isAbort(error)) errorBox.replaceChildren(notice('error', `Cannot load older ${cfg.noun[1]}: ${error.message}`));
    } finally {
      if (loading === controller) loading = null;
      olderButton.disabled = false;
      updateFooter();
    }
  }

  function updateFooter() {
    const n = rows.length;
    summary.textContent = `${count(n)} ${n === 1 ? cfg.noun[0] : cfg.noun[1]} shown${n >= MAX_ROWS ? ` (at most ${MAX_ROWS} are kept in the page)` : ''}${paused ? ' · paused: newer rows are not added while you browse older ones' : ''}`;
    olderButton.hidden = !hasOlder;
    showNewest.hidden = !paused;
    showNewest.textContent = newerWaiting ? `Show newest (${count(newerWaiting)} new)` : 'Show newest';
    empty.hidden = n > 0 || !initialLoaded;
    empty.textContent =
      filters.status || filters.q
        ? `No ${cfg.noun[1]} match these filters yet. New ones appear here as they arrive.`
        : `No ${cfg.noun[1]} yet. They appear here live as they arrive.`;
  }

  // --- live ----------------------------------------------------------------------------------
  const offEvent = ctx.live.on('event', (frame) => {
    if (!initialLoaded) {
      buffered.push(frame);
      return;
    }
    cfg.onEvent(frame, api_);
  });
  // A partition reset (retention) may have left a gap: read the first page again.
  const offReset = ctx.live.on('reset', () => reload());
  // The server numbers events anew (its store was rebuilt): the rows' `seq` are stale.
  const offRenumbered = ctx.live.on('renumbered', () => reload());

  ctx.live.ready().then(() => {
    if (!ctx.signal.aborted) reload();
  });

  return () => {
    offEvent();
    offReset();
    offRenumbered();
    announcer.stop();
    searchChanged.cancel();
    loading?.abort();
  };
}
