// The REST API: one fetch wrapper that speaks JSON, turns error bodies
// (`{"error": {"code", "message", ...}}`) into ApiError, and sends Idempotency-Key on writes.
// The shop's vocabulary and lifecycle are not here: they come from the server (rules.js).

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || (status ? `HTTP ${status}` : 'The server cannot be reached'));
    this.name = 'ApiError';
    this.status = status;
    this.code = error.code || (status ? `http_${status}` : 'network');
    this.field = error.field;
    this.fields = Array.isArray(error.fields) ? error.fields : [];
    this.body = body;
  }
}

let onUnauthorized = null;

/**
 * Who hears of a 401 (no credentials, or a session cookie that expired or was signed out):
 * app.js, which shows the sign-in page. One listener; `null` removes it.
 */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/**
 * `GET` unless `method` says otherwise; `body` is sent as JSON. Resolves to the parsed JSON
 * answer; rejects with ApiError (or the AbortError of `signal`). A 401 is reported to the
 * unauthorized handler first, unless `reportUnauthorized` is false (the session calls, where a
 * 401 is an answer: a wrong token).
 */
export async function api(path, { method = 'GET', body, idempotencyKey, signal, reportUnauthorized = true } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
    });
  } catch (error) {
    if (error && error.name === 'AbortError') throw error;
    throw new ApiError(0, null);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401 && reportUnauthorized && onUnauthorized) {
      try {
        onUnauthorized(error);
      } catch (failure) {
        console.warn('shopstream: the unauthorized handler failed', failure);
      }
    }
    throw error;
  }
  return data;
}

export const isAbort = (error) => error && error.name === 'AbortError';

/** A v4 UUID; `crypto.randomUUID` only exists on secure origins, so build one otherwise. */
export function uuid() {
  if (globalThis.crypto && typeof crypto.randomUUID === 'function' && isSecureContext) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** Microseconds since the epoch of an RFC 3339 time, keeping the sub-millisecond digits. */
export function micros(iso) {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/i.exec(String(iso || ''));
  if (!m) return NaN;
  const ms = Date.parse(m[1] + m[3]);
  return ms * 1000 + Number((m[2] || '').padEnd(6, '0').slice(0, 6));
}

/**
 * The paging cursor that starts just after a row: the same `<micros>_<id>` the server hands
 * out in `next_cursor` (its list key is the row's time and id), so that the table can go on
 * paging after it dropped rows to stay bounded.
 */
export function cursorAfter(timeIso, id) {
  const us = micros(timeIso);
  return Number.isFinite(us) ? `${us}_${id}` : null;
}
