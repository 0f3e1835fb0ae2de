// The replay of the log at start, as GET /readyz reports it (`replay`, `caught_up`): what the
// dashboard's progress bar shows while a new or rebuilt store catches up. Pure (no DOM), so
// tests/js checks it under node --test.

import { count } from './ui.js';

/** "45 s", "12 min", "2 h 5 min": a time left, rounded as people say it. */
export function duration(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  if (s < 90) return `${s} s`;
  const minutes = Math.round(s / 60);
  if (minutes < 90) return `${minutes} min`;
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  return m ? `${h} h ${m} min` : `${h} h`;
}

/**
 * What to show of a /readyz answer: `null` once the replay is over (or before it started),
 * otherwise `{ percent, done, total, text }`: the share done (0 to 100) for the bar, and one
 * line of figures (records done out of those to go, the rate, the time left).
 */
export function describeReplay(readyz) {
  const replay = readyz?.replay;
  if (!replay || readyz.caught_up !== false) return null;
  const done = Number(replay.records_done) || 0;
  const total = Number(replay.records_total) || 0;
  const percent = Math.min(100, Math.max(0, Number(replay.percent) || 0));
  const parts = [`${count(done)} of ${count(total)}${replay.total_known ? '' : '+'} records`];
  if (replay.records_per_second) parts.push(`${count(Math.round(replay.records_per_second))} records/s`);
  if (replay.eta_seconds !== null && replay.eta_seconds !== undefined) parts.push(`about ${duration(replay.eta_seconds)} left`);
  else parts.push('estimating the time left');
  return { percent, done, total, text: parts.join(' · ') };
}
