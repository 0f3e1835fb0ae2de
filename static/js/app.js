// The shell: who is signed in (GET /api/session; the sign-in page when the server asks for a
// token), one live connection for the whole visit, the connection indicator, the shop's rules
// (read from the server before the first page is mounted), and client-side routing with the
// History API (the server answers index.html on every page path).

import { setUnauthorizedHandler } from './api.js';
import { Live } from './live.js';
import { loadRules } from './rules.js';
import {
  session,
  readSession,
  forgetSession,
  signIn,
  signOut,
  signInError,
  endedBecause,
  needsSignIn,
  signedInWithCookie,
  canUseDashboard,
  can,
} from './session.js';
import { h, pageHeader, announce, notice } from './ui.js';
import { dashboardPage } from './pages/dashboard.js';
import { ordersPage, paymentsPage, deliveriesPage } from './pages/lists.js';
import { orderPage } from './pages/order.js';
import { kafkaPage } from './pages/kafka.js';
import { newOrderPage } from './pages/new-order.js';
import { apiDocsPage } from './pages/api-docs.js';

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
  [/^\/docs\/?$/, apiDocsPage],
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
  // Say state changes, not every countdown tick or catch-up count; nothing once signed out.
  if (phase !== 'running') return;
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

// --- who is signed in ------------------------------------------------------------------------

const nav = document.querySelector('.site-nav');
const connection = document.getElementById('connection');
const sessionBox = document.getElementById('session-box');
const sessionRole = document.getElementById('session-role');
const signOutButton = document.getElementById('sign-out');
const newOrderItem = document.querySelector('.site-nav a[data-nav="new"]')?.closest('li');

/** starting (reading the session), sign-in (the form), running (the pages and the live stream). */
let phase = 'starting';
/** The running dashboard's start: aborted when it stops (a 401, a sign-out). */
let run = null;
/** When this tab last signed in: a 401 right after says the browser does not keep the cookie. */
let signedInAt = 0;

/** The header while the dashboard runs: the pages, the live indicator, who is signed in. */
function showChrome(running) {
  nav.hidden = !running;
  connection.hidden = !running;
  sessionBox.hidden = !(running && signedInWithCookie(session));
  if (running && session?.role) sessionRole.replaceChildren('Signed in as ', h('strong', {}, session.role));
  if (newOrderItem) newOrderItem.hidden = !can('client');
  if (!running) {
    footerCursor.textContent = '';
    lastSpoken = '';
  }
}

/**
 * Stops the pages and the live stream, and shows the sign-in page saying why. Called once per
 * stop: a 401 that arrives while the sign-in page shows changes nothing (no loop, no reload).
 */
function stopDashboard(reason, kind = 'error') {
  phase = 'sign-in';
  run?.abort();
  run = null;
  if (current) {
    current.controller.abort();
    try {
      current.cleanup?.();
    } catch (error) {
      console.warn('shopstream: page cleanup failed', error);
    }
    current = null;
  }
  started = false;
  // The next session starts from now and shows nothing of this one (the tail, the cursor).
  live.stop({ forget: true });
  showSignIn({ reason, kind });
}

// Any API call refused with 401 while the pages run: the cookie expired or was signed out.
setUnauthorizedHandler((error) => {
  if (phase !== 'running') return;
  forgetSession();
  stopDashboard(endedBecause(error.code, { justSignedIn: Date.now() - signedInAt < 10_000 }));
});

// A refused WebSocket upgrade looks like any failed connection: ask the server whether the
// session is still there (only where sessions exist; a server that is away fails this too).
let checkingSession = false;
live.on('failed', async () => {
  if (phase !== 'running' || checkingSession || (session && session.mode !== 'tokens')) return;
  checkingSession = true;
  try {
    const view = await readSession();
    if (phase === 'running' && needsSignIn(view)) stopDashboard(endedBecause('live'));
  } catch {
    /* the server cannot be reached: the live connection keeps trying */
  } finally {
    checkingSession = false;
  }
});

signOutButton.addEventListener('click', async () => {
  if (signOutButton.disabled) return;
  signOutButton.disabled = true;
  try {
    await signOut();
    stopDashboard(endedBecause('signed_out'), 'info');
  } catch (error) {
    main.prepend(notice('error', `Cannot sign out: ${error.message}.`));
    announce(`Cannot sign out: ${error.message}`);
  } finally {
    signOutButton.disabled = false;
  }
});

/** The sign-in page; `reason` says why it shows again (a session that ended, a sign-out). */
function showSignIn({ reason = '', kind = 'error' } = {}) {
  phase = 'sign-in';
  showChrome(false);
  document.title = 'Sign in · shopstream';
  main.dataset.page = 'sign-in';
  delete main.dataset.status;
  const input = h('input', {
    id: 'signin-token',
    name: 'token',
    type: 'password',
    autocomplete: 'current-password',
    autocapitalize: 'off',
    spellcheck: 'false',
    required: true,
    'aria-describedby': 'signin-help signin-error',
  });
  const error = h('div', { id: 'signin-error', class: 'signin-error', 'aria-live': 'assertive' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'signin-submit' }, 'Sign in');
  const form = h(
    'form',
    { class: 'card signin-card', id: 'signin-form', novalidate: true, 'aria-labelledby': 'signin-h' },
    h('h1', { id: 'signin-h', tabindex: '-1' }, 'Sign in'),
    h('p', { class: 'muted' }, 'This shopstream asks for an access token. Its role (viewer, client or admin) decides what you may do here.'),
    reason ? h('div', { id: 'signin-reason' }, notice(kind, reason)) : null,
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'signin-token' }, 'Access token'),
      input,
      h('p', { class: 'help muted small', id: 'signin-help' }, 'Sent once, for a session cookie that lasts 12 hours; the dashboard does not keep the token.'),
    ),
    error,
    h('div', { class: 'actions' }, submit),
  );
  const showError = (text) => {
    error.replaceChildren(h('p', { class: 'field-error' }, text));
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    input.select();
  };
  let busy = false;
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (busy) return;
    const token = input.value.trim();
    if (!token) {
      showError('Enter your access token.');
      return;
    }
    busy = true;
    submit.disabled = true;
    form.setAttribute('aria-busy', 'true');
    error.replaceChildren();
    input.removeAttribute('aria-invalid');
    try {
      const role = await signIn(token);
      input.value = '';
      if (!canUseDashboard(role)) {
        await signOut().catch(() => {});
        showError(`This token has the ${role} role, which may read /metrics only: the dashboard needs a viewer, client or admin token.`);
        return;
      }
      signedInAt = Date.now();
      announce(`Signed in as ${role}`);
      startDashboard({ focus: true });
    } catch (failure) {
      // 409: this server runs without tokens (any more): there is nothing to sign in to.
      if (failure.status === 409) boot();
      else showError(signInError(failure));
    } finally {
      busy = false;
      submit.disabled = false;
      form.removeAttribute('aria-busy');
    }
  });
  main.replaceChildren(h('div', { class: 'signin' }, form));
  input.focus({ preventScroll: true });
}

// --- start-up --------------------------------------------------------------------------------

/** Seconds between tries to read the rules; the last repeats. */
const RULES_RETRY = [1, 2, 5, 10];

/**
 * Says why the dashboard cannot start, and resolves when it should try again: after a delay,
 * on "Try again", or as soon as the live connection is (re)established (the server is back);
 * at once when `signal` aborts (the dashboard stopped).
 */
function waitToRetry(error, attempt, signal) {
  const delay = RULES_RETRY[Math.min(attempt, RULES_RETRY.length - 1)];
  return new Promise((resolve) => {
    let timer = null;
    let off = null;
    const again = () => {
      clearTimeout(timer);
      off?.();
      signal.removeEventListener('abort', again);
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
    signal.addEventListener('abort', again, { once: true });
  });
}

/** The pages and the live stream, once the rules are here. */
async function startDashboard({ focus = false } = {}) {
  run?.abort();
  const controller = new AbortController();
  run = controller;
  const { signal } = controller;
  phase = 'running';
  showChrome(true);
  // The connection indicator works while the rules are on their way (or missing).
  live.start();
  main.dataset.page = 'loading';
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  let attempt = 0;
  for (;;) {
    try {
      await loadRules({ signal });
      break;
    } catch (error) {
      // Stopped meanwhile (a 401 shows the sign-in page): this start is over.
      if (signal.aborted) return;
      console.warn('shopstream: cannot read the rules', error);
      await waitToRetry(error, attempt, signal);
      if (signal.aborted) return;
      attempt += 1;
    }
  }
  if (signal.aborted) return;
  started = true;
  // After the error page or the sign-in page, the reader is moved to the page that replaces it.
  render({ focus: focus || attempt > 0 });
}

/** Reads who this visit is, then shows the sign-in page or starts the dashboard. */
async function boot() {
  phase = 'starting';
  main.dataset.page = 'loading';
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  let view = null;
  try {
    view = await readSession();
  } catch (error) {
    // The server cannot say (it is away, or older): start anyway; a 401 brings the sign-in page.
    console.warn('shopstream: cannot read the session', error);
  }
  if (needsSignIn(view)) {
    showSignIn();
  } else if (view?.authenticated && !canUseDashboard(view.role)) {
    await signOut().catch(() => {});
    showSignIn({ reason: `That session has the ${view.role} role, which may read /metrics only: the dashboard needs a viewer, client or admin token.` });
  } else {
    startDashboard();
  }
}

boot();
