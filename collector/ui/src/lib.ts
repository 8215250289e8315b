// Fetching the API, the router, and formatting. Nothing here builds HTML from data:
// pages render text through Preact, which escapes it.
import { useEffect, useState } from 'preact/hooks';

export class ApiError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

/** GETs (or sends) JSON from the collector's own origin; errors carry the API's message. */
export async function api<T = any>(path: string, init?: RequestInit): Promise<T> {
  const r = await fetch(path, { credentials: 'same-origin', ...init });
  const text = await r.text();
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (r.status === 401) dispatchEvent(new Event('calm-needs-token'));
  if (!r.ok) {
    const msg = (body && (body.error || body.detail)) || text.trim() || r.statusText;
    throw new ApiError(r.status, `${r.status}: ${msg}`);
  }
  return body as T;
}

/** A Prometheus API call; returns `data`. */
export async function prom<T = any>(path: string, params: Record<string, string>, signal?: AbortSignal): Promise<T> {
  const body = new URLSearchParams(params);
  const res = await api<any>(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body,
    signal,
  });
  return res.data as T;
}

export type Load<T> = { data?: T; error?: string; loading: boolean };

/** Loads `f()` when `deps` change; `reload` runs it again. */
export function useLoad<T>(f: () => Promise<T>, deps: unknown[]): Load<T> & { reload: () => void } {
  const [n, setN] = useState(0);
  const [st, setSt] = useState<Load<T>>({ loading: true });
  useEffect(() => {
    let live = true;
    setSt((s) => ({ ...s, loading: true }));
    f().then(
      (data) => live && setSt({ data, loading: false }),
      (e) => live && setSt({ error: String(e.message || e), loading: false }),
    );
    return () => {
      live = false;
    };
  }, [...deps, n]);
  return { ...st, reload: () => setN((x) => x + 1) };
}

// --- router ---------------------------------------------------------------------------

type Loc = { path: string; search: URLSearchParams };
const listeners = new Set<() => void>();
function current(): Loc {
  return { path: location.pathname, search: new URLSearchParams(location.search) };
}
export function navigate(to: string, replace = false) {
  if (replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  listeners.forEach((l) => l());
  if (!replace) window.scrollTo(0, 0);
}
addEventListener('popstate', () => listeners.forEach((l) => l()));
export function useLocation(): Loc {
  const [loc, setLoc] = useState(current);
  useEffect(() => {
    const l = () => setLoc(current());
    listeners.add(l);
    return () => {
      listeners.delete(l);
    };
  }, []);
  return loc;
}
/** Same-origin links go through the router; the href is always a path we built. */
document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = (e.target as Element | null)?.closest?.('a');
  if (!a || a.target || a.hasAttribute('download')) return;
  const href = a.getAttribute('href');
  if (!href || !href.startsWith('/') || href.startsWith('//') || href.startsWith('/api/')) return;
  e.preventDefault();
  navigate(href);
});

// --- formatting -----------------------------------------------------------------------

export function ago(iso?: string | number | null): string {
  if (iso === undefined || iso === null || iso === '') return '—';
  const t = typeof iso === 'number' ? iso : Date.parse(iso);
  if (!isFinite(t) || t <= 0) return '—';
  return agoSecs((Date.now() - t) / 1000);
}
export function agoSecs(s: number): string {
  if (!isFinite(s)) return '—';
  if (s < 0) s = 0;
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}
export function abs(iso?: string | null): string {
  if (!iso) return '';
  const d = new Date(iso);
  return isNaN(d.getTime()) ? String(iso) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}
export function bytes(n?: number | null): string {
  if (n === undefined || n === null || !isFinite(n)) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}
export function num(v: number): string {
  if (!isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e15 || a < 1e-3)) return v.toExponential(2);
  if (a >= 1e3) {
    const [d, u] = a >= 1e12 ? [1e12, 'T'] : a >= 1e9 ? [1e9, 'G'] : a >= 1e6 ? [1e6, 'M'] : [1e3, 'k'];
    return `${Number((v / (d as number)).toPrecision(3))}${u}`;
  }
  return String(Math.round(v * 1000) / 1000);
}

/** A series' labels as PromQL writes them: name{k="v", ...}. */
export function seriesName(metric: Record<string, string>): string {
  const name = metric.__name__ || '';
  const rest = Object.keys(metric)
    .filter((k) => k !== '__name__')
    .sort()
    .map((k) => `${k}=${JSON.stringify(metric[k])}`);
  return rest.length ? `${name}{${rest.join(', ')}}` : name || '{}';
}

/** A string as a PromQL string literal. */
export function promStr(s: string): string {
  return JSON.stringify(s);
}

/** A parsed duration like 1h, 30m, 7d in seconds (null when it is not one). */
export function parseDuration(s: string): number | null {
  const m = /^(\d+)(s|m|h|d|w)$/.exec(s.trim());
  if (!m) return null;
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2] as 's']!;
}
