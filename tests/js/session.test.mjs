// Unit tests of static/js/session.js (who is signed in, what each role is offered, what the
// sign-in page says) and of api.js's report of a 401. `node --test tests/js/*.test.mjs`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { importStatic } from './static-modules.mjs';

const sessionModule = await importStatic('session.js');
const api = await importStatic('api.js');
const { roleMay, needsSignIn, signedInWithCookie, canUseDashboard, needsRole, signInError, endedBecause, readSession, signIn, signOut, can } = sessionModule;

const json = (status, body) => Promise.resolve(new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } }));

test("roleMay follows the server's ladder: viewer < client < admin, metrics apart", () => {
  const needs = ['viewer', 'client', 'admin', 'metrics'];
  const table = Object.fromEntries(['viewer', 'client', 'admin', 'metrics'].map((role) => [role, needs.filter((n) => roleMay(role, n))]));
  assert.deepEqual(table, {
    viewer: ['viewer'],
    client: ['viewer', 'client'],
    admin: ['viewer', 'client', 'admin', 'metrics'],
    metrics: ['metrics'],
  });
  assert.equal(roleMay('root', 'viewer'), false, 'an unknown role may do nothing');
  assert.equal(roleMay('toString', 'viewer'), false, 'a name from Object.prototype is no role');
  assert.equal(roleMay(null, 'admin'), true, 'without a known role the server decides');
});

test('needsSignIn and signedInWithCookie read GET /api/session', () => {
  assert.equal(needsSignIn({ mode: 'tokens', authenticated: false, role: null, via: null }), true);
  assert.equal(needsSignIn({ mode: 'tokens', authenticated: true, role: 'viewer', via: 'cookie' }), false);
  assert.equal(needsSignIn({ mode: 'loopback', authenticated: true, role: 'admin', via: 'anonymous' }), false);
  assert.equal(needsSignIn({ mode: 'open', authenticated: true, role: 'admin', via: 'anonymous' }), false);
  assert.equal(needsSignIn(null), false, 'a session that could not be read: start, and let a 401 say more');
  assert.equal(signedInWithCookie({ mode: 'tokens', authenticated: true, role: 'client', via: 'cookie' }), true);
  assert.equal(signedInWithCookie({ mode: 'tokens', authenticated: true, role: 'client', via: 'bearer' }), false, 'a bearer token cannot be signed out');
  assert.equal(signedInWithCookie({ mode: 'loopback', authenticated: true, role: 'admin', via: 'anonymous' }), false);
  assert.equal(signedInWithCookie(null), false);
  assert.equal(canUseDashboard('viewer'), true);
  assert.equal(canUseDashboard('metrics'), false);
});

test('needsRole says what a role may not do, and which role may', () => {
  assert.equal(needsRole('Placing orders', 'client', 'viewer'), 'Placing orders needs the client role; you are signed in with the viewer role.');
  assert.equal(needsRole('Browsing records', 'admin', null), 'Browsing records needs the admin role.');
});

test('the sign-in page says why a sign-in was refused, and why it shows again', () => {
  assert.match(signInError(new api.ApiError(401, { error: { code: 'invalid_token', message: 'this token is not valid' } })), /not valid/);
  assert.match(signInError(new api.ApiError(0, null)), /cannot be reached/);
  assert.match(signInError(new api.ApiError(403, { error: { code: 'cross_origin', message: 'origin not allowed' } })), /origin not allowed/);
  assert.match(endedBecause('invalid_session'), /session has ended/);
  assert.match(endedBecause('unauthenticated'), /session has ended/);
  assert.match(endedBecause('unauthenticated', { justSignedIn: true }), /cookie/);
  assert.match(endedBecause('live'), /live connection was refused/);
  assert.match(endedBecause('signed_out'), /signed out/);
  assert.ok(endedBecause('something_new'));
});

test('a 401 is reported to the handler, unless the call says a 401 is its answer; other errors are not', async (t) => {
  const heard = [];
  api.setUnauthorizedHandler((error) => heard.push(error.code));
  t.after(() => api.setUnauthorizedHandler(null));
  let answer = () => json(401, { error: { code: 'invalid_session', message: 'the session has ended' } });
  t.mock.method(globalThis, 'fetch', () => answer());

  await assert.rejects(api.api('/api/orders'), (e) => e.status === 401 && e.code === 'invalid_session');
  assert.deepEqual(heard, ['invalid_session']);
  await assert.rejects(api.api('/api/session', { method: 'POST', body: { token: 'x' }, reportUnauthorized: false }), (e) => e.status === 401);
  assert.deepEqual(heard, ['invalid_session'], 'a wrong token at sign-in is no expired session');
  answer = () => json(403, { error: { code: 'forbidden', message: 'this route needs the admin role; the token has the viewer role' } });
  await assert.rejects(api.api('/api/events'), (e) => e.status === 403 && /admin role/.test(e.message));
  assert.deepEqual(heard, ['invalid_session'], 'a 403 keeps the session');
  // A handler that throws does not hide the refusal from the caller.
  api.setUnauthorizedHandler(() => {
    throw new Error('broken');
  });
  t.mock.method(console, 'warn', () => {});
  answer = () => json(401, { error: { code: 'unauthenticated', message: 'a token is needed' } });
  await assert.rejects(api.api('/api/stats'), (e) => e.code === 'unauthenticated');
});

test('readSession, signIn and signOut speak to /api/session and keep what it says', async (t) => {
  const calls = [];
  const answers = [
    json(200, { mode: 'tokens', authenticated: false, role: null, via: null }),
    json(200, { role: 'client' }),
    json(200, { mode: 'tokens', authenticated: false, role: null, via: null }),
  ];
  t.mock.method(globalThis, 'fetch', (path, options) => {
    calls.push([path, options.method, options.body ?? null]);
    return answers.shift();
  });
  assert.equal((await readSession()).authenticated, false);
  assert.equal(can('viewer'), true, 'before a sign-in the server decides (the sign-in page shows anyway)');
  assert.equal(await signIn('a-token-of-sixteen-chars'), 'client');
  assert.deepEqual(sessionModule.session, { mode: 'tokens', authenticated: true, role: 'client', via: 'cookie' });
  assert.equal(can('client'), true);
  assert.equal(can('admin'), false);
  await signOut();
  assert.equal(sessionModule.session.authenticated, false);
  assert.deepEqual(calls, [
    ['/api/session', 'GET', null],
    ['/api/session', 'POST', JSON.stringify({ token: 'a-token-of-sixteen-chars' })],
    ['/api/session', 'DELETE', null],
  ]);
});
