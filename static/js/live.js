// The one live connection of the page: a WebSocket to /ws that keeps a cursor (the next offset
// it needs per topic and partition) and resumes from it after any break, so the page gets what
// it missed exactly once, in order per partition.
//
// Frames from the server (src/live/session.rs; their types are in src/messages.rs): `hello`
// (the session's starting cursor), `event` (one record), `reset` (a partition's offset fell out
// of retention), `caught_up` (the replay is over), `closing` (the server is about to close;
// carries the cursor), `error`, `pong`.
//
// The cursor lives in sessionStorage too, so a reload within the tab resumes gap-free as well.
// After a resume the page counts the events it catches up on: it asks /api/kafka for the end of
// every partition and counts the events below those ends, whether the server replays them from
// Kafka or sends them live while its own consumers catch up after a restart.
//
// With tokens the upgrade needs the session cookie; a refused upgrade (401) looks like any
// failed connection to the page, so every connection that fails before it opens is reported
// (`failed`), and the shell asks /api/session whether the session is still there. stop() ends
// the connection when the visit signs out; start() begins again after the next sign-in.

import { api } from './api.js';

const STORAGE_KEY = 'shopstream.live.cursor';
/** Reconnection delays in seconds; the last repeats. Jittered by ±20 %. */
const BACKOFF = [0.5, 1, 2, 3, 5, 8];
/** A text ping goes out this often; a connection silent for PING_TIMEOUT is considered dead. */
const PING_EVERY = 15000;
const PING_TIMEOUT = 40000;
/** A resume's count is reported at the latest after this long (a trailing record may be one the server skips). */
const CATCH_UP_LIMIT = 20000;
/** Tries to read the partitions' ends for a resume's count, TARGET_EVERY ms apart. */
const TARGET_TRIES = 10;
const TARGET_EVERY = 500;
/** How many recent events are kept for the Kafka page's tail. */
const RECENT = 100;

const keyOf = (topic, partition) => `${topic}:${partition}`;

export function parseCursor(text) {
  const cursor = new Map();
  for (const entry of String(text || '').split(',')) {
    const m = /^\s*([a-z]+):(\d+):(\d+)\s*$/.exec(entry);
    if (m) cursor.set(keyOf(m[1], m[2]), Number(m[3]));
  }
  return cursor;
}

export const formatCursor = (cursor) => [...cursor].map(([k, o]) => `${k}:${o}`).join(',');

export class Live {
  constructor() {
    /** connecting | live | reconnecting | offline */
    this.state = 'connecting';
    this.detail = '';
    this.cursor = new Map();
    this.ws = null;
    this.attempt = 0;
    this.retryAt = 0;
    this.listeners = new Map();
    this.recent = [];
    this.catchUp = null;
    this.lastCatchUp = null;
    this.timers = {};
    this.lastHeard = 0;
    this.hasConnected = false;
    /** Between start() and stop(): connects and reconnects. */
    this.running = false;
    this.windowListeners = false;
    /** The name of the server store's event numbering, from its last `hello`. */
    this.store = '';
    this.firstHello = new Promise((resolve) => {
      this.resolveFirstHello = resolve;
    });
  }

  // --- subscriptions -------------------------------------------------------------------------

  /** `type`: event, state, hello, reset, renumbered, caughtup, failed. Returns the unsubscribe function. */
  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type)?.delete(fn);
  }

  emit(type, payload) {
    for (const fn of this.listeners.get(type) || []) {
      try {
        fn(payload);
      } catch (error) {
        reportError(error);
      }
    }
  }

  /** Resolves at the first hello, or after `ms` (so a page still loads without the stream). */
  ready(ms = 1500) {
    return Promise.race([this.firstHello, new Promise((r) => setTimeout(r, ms))]);
  }

  // --- connection ----------------------------------------------------------------------------

  start() {
    if (this.running) return;
    this.running = true;
    this.attempt = 0;
    if (!this.cursor.size) {
      try {
        const saved = sessionStorage.getItem(STORAGE_KEY);
        if (saved) this.cursor = parseCursor(saved);
      } catch {
        /* storage may be disabled */
      }
    }
    if (!this.windowListeners) {
      this.windowListeners = true;
      window.addEventListener('online', () => {
        if (this.running && this.state === 'offline') this.connect();
      });
      window.addEventListener('offline', () => {
        if (this.running && this.state !== 'live') this.setState('offline', 'the browser is offline');
      });
      window.addEventListener('pagehide', () => this.save(true));
    }
    this.connect();
  }

  /**
   * Ends the connection and every timer, and reconnects no more until start(). `forget`: the
   * cursor and the recent events go too (a sign-out: the next session starts from now, and
   * shows nothing of this one).
   */
  stop({ forget = false } = {}) {
    this.running = false;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      try {
        ws.close();
      } catch {
        /* already closed */
      }
    }
    this.finishCatchUp(true);
    for (const name of Object.keys(this.timers)) this.clearTimer(name);
    if (forget) {
      this.cursor.clear();
      this.recent = [];
      this.lastCatchUp = null;
      try {
        sessionStorage.removeItem(STORAGE_KEY);
      } catch {
        /* storage may be disabled */
      }
    } else {
      this.save(true);
    }
    this.attempt = 0;
    this.setState('connecting', '');
  }

  /** Reconnects at once (the connection pill calls this). */
  reconnectNow() {
    if (this.state === 'live') return;
    this.attempt = 0;
    this.connect();
  }

  connect() {
    if (!this.running) return;
    this.clearTimer('retry');
    this.clearTimer('countdown');
    if (this.ws) {
      const old = this.ws;
      this.ws = null;
      try {
        old.close();
      } catch {
        /* already closed */
      }
    }
    const url = new URL('/ws', location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const resuming = this.cursor.size > 0;
    if (resuming) url.searchParams.set('cursor', formatCursor(this.cursor));
    this.resumeFrom = resuming ? new Map(this.cursor) : null;
    this.setState(this.attempt ? 'reconnecting' : 'connecting', this.attempt ? 'connecting…' : '');
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.addEventListener('open', () => {
      opened = true;
    });
    ws.addEventListener('message', (m) => {
      if (this.ws === ws) this.onMessage(m.data);
    });
    ws.addEventListener('close', (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.clearTimer('ping');
      this.finishCatchUp(true);
      this.scheduleReconnect(e.reason);
      // Refused before it opened (a 401 among other reasons): the shell may ask why.
      if (!opened) this.emit('failed', { attempt: this.attempt });
    });
  }

  scheduleReconnect(reason) {
    if (!navigator.onLine) {
      this.setState('offline', 'the browser is offline');
      return;
    }
    const base = BACKOFF[Math.min(this.attempt, BACKOFF.length - 1)];
    const delay = base * 1000 * (0.8 + Math.random() * 0.4);
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.lastCloseReason = reason || '';
    const tick = () => {
      const left = Math.max(0, Math.ceil((this.retryAt - Date.now()) / 1000));
      this.setState('reconnecting', left > 0 ? `in ${left} s` : 'now');
    };
    tick();
    this.timers.countdown = setInterval(tick, 500);
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }

  clearTimer(name) {
    clearTimeout(this.timers[name]);
    clearInterval(this.timers[name]);
    this.timers[name] = null;
  }

  setState(state, detail = '') {
    const changed = state !== this.state || detail !== this.detail;
    this.state = state;
    this.detail = detail;
    if (changed) this.emit('state', { state, detail });
  }

  // --- frames --------------------------------------------------------------------------------

  onMessage(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    this.lastHeard = Date.now();
    switch (frame.type) {
      case 'hello':
        this.onHello(frame);
        break;
      case 'event':
        this.onEvent(frame);
        break;
      case 'caught_up':
        if (this.catchUp) {
          this.catchUp.replayed = frame.replayed || 0;
          this.catchUp.serverDone = true;
          this.checkCatchUp();
        }
        break;
      case 'reset':
        this.cursor.set(keyOf(frame.topic, frame.partition), frame.earliest);
        this.save();
        this.emit('reset', frame);
        break;
      case 'closing':
        // The server's view of our cursor is authoritative (its replay may have stepped over
        // records it skips); keep it for the next session.
        if (frame.cursor) for (const [k, o] of parseCursor(frame.cursor)) this.cursor.set(k, o);
        this.lastCloseReason = frame.reason || '';
        this.save(true);
        break;
      case 'error':
        this.lastCloseReason = frame.message || frame.code || 'server error';
        break;
      default:
        break;
    }
  }

  onHello(frame) {
    const start = parseCursor(frame.start || frame.cursor);
    for (const [k, o] of start) this.cursor.set(k, o);
    this.save(true);
    const wasResume = this.resumeFrom !== null;
    this.attempt = 0;
    this.hasConnected = true;
    this.server = frame.server || '';
    // Another numbering of events (a rebuilt store, another instance): the rows' `seq` no
    // longer compare with the frames', so the pages read their rows again.
    const renumbered = Boolean(this.store && frame.store && frame.store !== this.store);
    if (frame.store) this.store = frame.store;
    this.clearTimer('retry');
    this.clearTimer('countdown');
    this.startPings();
    this.setState('live', wasResume ? 'catching up…' : '');
    if (wasResume) this.beginCatchUp();
    this.emit('hello', frame);
    if (renumbered) this.emit('renumbered', frame);
    this.resolveFirstHello();
  }

  onEvent(frame) {
    const key = keyOf(frame.topic, frame.partition);
    const next = this.cursor.get(key);
    // Never show one (topic, partition, offset) twice.
    if (next !== undefined && frame.offset < next) return;
    this.cursor.set(key, frame.offset + 1);
    this.save();
    if (this.catchUp) {
      const end = this.catchUp.target?.get(key);
      if (end === undefined ? !this.catchUp.target : frame.offset < end) this.catchUp.count += 1;
    }
    this.recent.push(frame);
    if (this.recent.length > RECENT) this.recent.shift();
    this.emit('event', frame);
    if (this.catchUp) this.checkCatchUp();
  }

  // --- catching up after a resume ------------------------------------------------------------

  beginCatchUp() {
    const catchUp = { count: 0, target: null, replayed: 0, serverDone: false, targetFailed: false };
    this.catchUp = catchUp;
    this.clearTimer('catchUp');
    this.timers.catchUp = setTimeout(() => this.finishCatchUp(), CATCH_UP_LIMIT);
    const readTarget = (attempt) => {
      if (this.catchUp !== catchUp) return;
      api('/api/kafka')
        .then((kafka) => {
          if (this.catchUp !== catchUp) return;
          // The end of every partition now: what was written while we were away ends there.
          catchUp.target = new Map((kafka.partitions || []).map((p) => [keyOf(p.topic, p.partition), p.latest_offset]));
          this.checkCatchUp();
        })
        .catch(() => {
          if (this.catchUp !== catchUp) return;
          // A server that has just started may take sessions before it is connected to Kafka
          // (it answers 503 meanwhile, and its consumers have not sent what was missed yet):
          // ask again before counting on its caught_up frame alone.
          if (attempt < TARGET_TRIES) {
            this.timers.catchUpTarget = setTimeout(() => readTarget(attempt + 1), TARGET_EVERY);
            return;
          }
          catchUp.targetFailed = true;
          this.checkCatchUp();
        });
    };
    this.clearTimer('catchUpTarget');
    readTarget(1);
  }

  checkCatchUp() {
    const c = this.catchUp;
    if (!c) return;
    if (c.target) {
      for (const [key, end] of c.target) {
        const at = this.cursor.get(key);
        if (at !== undefined && at < end) {
          this.setState('live', `catching up… ${c.count} events`);
          return;
        }
      }
      this.finishCatchUp();
    } else if (c.targetFailed && c.serverDone) {
      this.finishCatchUp();
    }
  }

  finishCatchUp(broken = false) {
    const c = this.catchUp;
    if (!c) return;
    this.catchUp = null;
    this.clearTimer('catchUp');
    this.clearTimer('catchUpTarget');
    if (broken) return;
    const n = Math.max(c.count, c.replayed);
    this.lastCatchUp = { count: n, at: Date.now() };
    this.setState('live', `caught up ${n} ${n === 1 ? 'event' : 'events'}`);
    this.emit('caughtup', { count: n });
    this.clearTimer('caughtUpNote');
    this.timers.caughtUpNote = setTimeout(() => {
      if (this.state === 'live') this.setState('live', '');
    }, 30000);
  }

  // --- liveness ------------------------------------------------------------------------------

  startPings() {
    this.clearTimer('ping');
    this.lastHeard = Date.now();
    this.timers.ping = setInterval(() => {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this.lastHeard > PING_TIMEOUT) {
        // Silent for too long (a dead network path): drop it and resume by cursor.
        this.ws = null;
        try {
          ws.close();
        } catch {
          /* ignore */
        }
        this.clearTimer('ping');
        this.finishCatchUp(true);
        this.scheduleReconnect('no answer from the server');
        return;
      }
      try {
        ws.send('{"type":"ping"}');
      } catch {
        /* closing */
      }
    }, PING_EVERY);
  }

  // --- cursor persistence --------------------------------------------------------------------

  save(now = false) {
    if (now) {
      this.clearTimer('save');
      try {
        sessionStorage.setItem(STORAGE_KEY, formatCursor(this.cursor));
      } catch {
        /* full or disabled */
      }
      return;
    }
    if (!this.timers.save)
      this.timers.save = setTimeout(() => {
        this.timers.save = null;
        this.save(true);
      }, 250);
  }

  cursorText() {
    return formatCursor(this.cursor);
  }
}

/** Reports a page bug without breaking the stream (shows in the console as a warning). */
function reportError(error) {
  console.warn('shopstream: a live listener failed', error);
}
