// Who is using the dashboard: `GET /api/session` says how the server authenticates (`tokens`,
// `loopback` or `open`) and who the caller is (a role, and whether by the session cookie, a
// bearer token or anonymously). With tokens the dashboard signs in by exchanging a token for
// the session cookie (`POST /api/session`; the cookie is HttpOnly, so no script here ever
// holds the token once it is sent) and signs out with `DELETE /api/session`.
//
// The role decides which controls the pages offer; the server decides what is allowed, and a
// 403 it still sends is shown as it says it.

import { api } from './api.js';

/** What the server said last about this visit; `null` until it has been read (or when it could not be). */
export let session = null;

/** Each role and the roles it includes: the server's ladder (src/access.rs). */
const INCLUDES = {
  viewer: ['viewer'],
  client: ['viewer', 'client'],
  admin: ['viewer', 'client', 'admin', 'metrics'],
  metrics: ['metrics'],
};

/**
 * Whether `role` may do what `needed` (viewer, client, admin, metrics) may. An unknown role may
 * do nothing; `null` (no role: the session could not be read) is left to the server to decide.
 */
export function roleMay(role, needed) {
  if (role === null || role === undefined) return true;
  return Object.hasOwn(INCLUDES, role) && INCLUDES[role].includes(needed);
}

/** Whether this visit may do what `needed` may, as far as the dashboard knows. */
export const can = (needed) => roleMay(session?.authenticated ? session.role : null, needed);

/** Whether the server asks for a token and this visit has none: the sign-in page, not the dashboard. */
export const needsSignIn = (view) => Boolean(view && view.mode === 'tokens' && !view.authenticated);

/** Whether the header offers "Sign out": only a session signed in with the cookie can end. */
export const signedInWithCookie = (view) => Boolean(view && view.authenticated && view.via === 'cookie');

/** Whether a role can use the dashboard at all (the metrics role reads /metrics and nothing else). */
export const canUseDashboard = (role) => roleMay(role, 'viewer');

/**
 * What a page says in place of a control this visit's role may not use: `what` (a sentence's
 * subject, "Placing orders") needs `needed`.
 */
export function needsRole(what, needed, role) {
  return role ? `${what} needs the ${needed} role; you are signed in with the ${role} role.` : `${what} needs the ${needed} role.`;
}

/** needsRole() for this visit. */
export const roleNote = (what, needed) => needsRole(what, needed, session?.authenticated ? session.role : null);

/** Reads `GET /api/session` and keeps it. */
export async function readSession({ signal } = {}) {
  session = await api('/api/session', { signal, reportUnauthorized: false });
  return session;
}

/** Forgets what the server said (after a 401: the next sign-in says it again). */
export function forgetSession() {
  if (session) session = { ...session, authenticated: false, role: null, via: null };
}

/** Exchanges `token` for the session cookie; resolves to the role. Rejects with ApiError (401 invalid_token). */
export async function signIn(token) {
  const answer = await api('/api/session', { method: 'POST', body: { token }, reportUnauthorized: false });
  session = { mode: 'tokens', authenticated: true, role: answer.role, via: 'cookie' };
  return answer.role;
}

/** Ends the session: the server refuses its cookie from now on. */
export async function signOut() {
  await api('/api/session', { method: 'DELETE', reportUnauthorized: false });
  forgetSession();
}

/** What the sign-in form says when the server refused a sign-in. */
export function signInError(error) {
  if (error.status === 401) return 'This token is not valid. Check that it was copied whole, and try again.';
  if (error.status === 422) return 'Enter an access token.';
  if (!error.status) return 'The server cannot be reached. Try again when it is back.';
  return `The server refused the sign-in: ${error.message}`;
}

/**
 * Why the sign-in page is shown again after a refusal (an ApiError's code, or `live` when the
 * live connection was refused), for the notice above the form.
 */
export function endedBecause(code, { justSignedIn = false } = {}) {
  switch (code) {
    case 'invalid_session':
      return 'Your session has ended: it expired or was signed out. Sign in again to go on.';
    case 'unauthenticated':
      // The cookie was set a moment ago and is not sent back: the browser refuses to keep it.
      return justSignedIn
        ? 'The browser did not send the session cookie back. Allow cookies for this site, then sign in again.'
        : 'Your session has ended. Sign in again to go on.';
    case 'live':
      return 'The live connection was refused: your session has ended. Sign in again to go on.';
    case 'signed_out':
      return 'You have signed out.';
    default:
      return 'The server asks you to sign in again.';
  }
}
