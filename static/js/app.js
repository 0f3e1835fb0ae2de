// The shell: one live connection for the whole visit, the connection indicator, the shop's
// rules (read from the server before the first page is mounted), and client-side routing with
// the History API (the server answers index.html on every page path).

import { Live } from './live.js';
import { loadRules } from './rules.js';
import { h, pageHeader, announce, notice } from './ui.js';
import { dashboardPage } from './pages/dashboard.js';
import { ordersPage, paymentsPage, deliveriesPage } from './pages/lists.js';
import { orderPage } from './pages/order.js';
import { kafkaPage } from './pages/kafka.js';
import { newOrderPage } from './pages/new-order.js';

const notFoundPage = {
  title: 'Not found',
  nav: '',
  mount(main) {
    main.append(pageHeader('Page not found'), h('p', {}, 'There is no such page. ', h('a', { href: '/' }, 'Go to the dashboard'), '.'));
    return () => {};
  },
};

const ROUTES = [
  [/^\/(?:index\.html)?$/, dashboardPage],
  [/^\/orders\/?$/, ordersPage],
  [/^\/orders\/([^/]+)\/?$/, orderPage],
  [/^\/payments\/?$/, paymentsPage],
  [/^\/deliveries\/?$/, deliveriesPage],
  [/^\/kafka\/?$/, kafkaPage],
  [/^\/new\/?$/, newOrderPage],
];

const live = new Live();
const main = document.getElementById('main');
let current = null; // { cleanup, controller }
let started = false; // the rules are here: pages may be mounted

function route(path) {
  for (const [pattern, page] of ROUTES) {
    const m = pattern.exec(path);
    if (m) return { page, params: m.slice(1) };
  }
  return { page: notFoundPage, params: [] };
}

function render({ focus }) {
  if (current) {
    current.controller.abort();
    try {
      current.cleanup?.();
    } catch (error) {
      console.warn('shopstream: page cleanup failed', error);
    }
  }
  const { page, params } = route(location.pathname);
  const controller = new AbortController();
  main.replaceChildren();
  main.dataset.page = page.nav || 'none';
  delete main.dataset.status;
  document.title = `${page.title} · shopstream`;
  for (const link of document.querySelectorAll('.site-nav a')) {
    if (link.dataset.nav === page.nav) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const cleanup = page.mount(main, { live, params, signal: controller.signal, navigate });
  current = { cleanup, controller };
  if (focus) {
    // Move the reader to the new page's heading, as a full page load would.
    const heading = main.querySelector('h1');
    (heading || main).focus({ preventScroll: true });
    window.scrollTo(0, 0);
    announce(`${page.title} page`);
  }
}

export function navigate(href, { replace = false } = {}) {
  const url = new URL(href, location.href);
  if (url.pathname + url.search === location.pathname + location.search) return;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  // Before the rules are here the address changes alone; start-up mounts the page it names.
  if (started) render({ focus: true });
}

document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || /^\/(api|ws|healthz|readyz|metrics)(\/|$)/.test(url.pathname)) return;
  if (url.pathname === location.pathname && url.hash) return; // in-page anchors (skip link)
  e.preventDefault();
  navigate(url.href);
});

window.addEventListener('popstate', () => {
  if (started) render({ focus: true });
});

// --- the connection indicator ----------------------------------------------------------------

const pill = document.getElementById('conn-pill');
const pillText = document.getElementById('conn-text');
const liveRegion = document.getElementById('conn-live');
const footerCursor = document.getElementById('footer-cursor');

const LABELS = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting', offline: 'Offline' };
let lastSpoken = '';

live.on('state', ({ state, detail }) => {
  const text = detail ? `${LABELS[state]} · ${detail}` : LABELS[state];
  pill.dataset.state = state;
  pillText.textContent = text;
  pill.title = state === 'live' ? 'Receiving events live' : 'Activate to reconnect now';
  // Say state changes, not every countdown tick or catch-up count.
  const spoken = state === 'reconnecting' ? 'Connection lost, reconnecting' : detail.startsWith('caught up') ? text : LABELS[state];
  if (spoken !== lastSpoken) {
    liveRegion.textContent = spoken === 'Live' ? 'Live: receiving events' : spoken;
    lastSpoken = spoken;
  }
});
live.on('hello', (frame) => {
  footerCursor.textContent = frame.server ? `server: ${frame.server}` : '';
});
pill.addEventListener('click', () => live.reconnectNow());

// --- start-up --------------------------------------------------------------------------------

/** Seconds between tries to read the rules; the last repeats. */
const RULES_RETRY = [1, 2, 5, 10];

/**
 * Says why the dashboard cannot start, and resolves when it should try again: after a delay,
 * on "Try again", or as soon as the live connection is (re)established (the server is back).
 */
function waitToRetry(error, attempt) {
  const delay = RULES_RETRY[Math.min(attempt, RULES_RETRY.length - 1)];
  return new Promise((resolve) => {
    let timer = null;
    let off = null;
    const again = () => {
      clearTimeout(timer);
      off?.();
      button.disabled = true;
      resolve();
    };
    const button = h('button', { type: 'button', class: 'btn', id: 'rules-retry', onClick: again }, 'Try again');
    main.dataset.page = 'error';
    main.replaceChildren(
      pageHeader('The dashboard cannot start'),
      notice(
        'error',
        h('p', {}, 'It needs the shop’s rules from the server (', h('code', {}, 'GET /api/rules'), ') and could not read them.'),
        h('p', {}, `${error.message}.`),
        h('p', {}, `It tries again in ${delay} s, or as soon as the live connection is back.`),
      ),
      h('p', {}, button),
    );
    timer = setTimeout(again, delay * 1000);
    off = live.on('hello', again);
  });
}

async function start() {
  // The connection indicator works while the rules are on their way (or missing).
  live.start();
  main.dataset.page = 'loading';
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  let attempt = 0;
  for (;;) {
    try {
      await loadRules();
      break;
    } catch (error) {
      console.warn('shopstream: cannot read the rules', error);
      await waitToRetry(error, attempt);
      attempt += 1;
    }
  }
  started = true;
  // After the error page, the reader is moved to the page that replaces it.
  render({ focus: attempt > 0 });
}

start();
