// The Calm collector's UI: one shell served for every page path; this router picks the
// page. Text is rendered only through Preact (escaped); no HTML is built from data.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import './style.css';
import { Load, api, useLocation } from './lib';
import { Fleet } from './fleet';
import { Explore } from './explore';
import { Host } from './host';
import { IssuePage, Issues } from './issues';
import { Alerts, Rules } from './alerts';

export function Status(props: { st: Load<unknown> }) {
  if (props.st.error) {
    const auth = /^401/.test(props.st.error);
    return (
      <p class="error" role="alert">
        {auth ? 'This collector needs a read token: ' : 'Could not load: '}
        {props.st.error}
      </p>
    );
  }
  if (props.st.loading && props.st.data === undefined) return <p class="muted" role="status">Loading…</p>;
  return null;
}

const NAV: [string, string][] = [
  ['/fleet', 'Fleet'],
  ['/explore', 'Explore'],
  ['/issues', 'Issues'],
  ['/alerts', 'Alerts'],
  ['/rules', 'Rules'],
];

function page(path: string) {
  let m: RegExpExecArray | null;
  if (path === '/' || path === '/fleet') return { key: '/fleet', title: 'Fleet', el: <Fleet /> };
  if (path === '/explore' || path === '/graph') return { key: '/explore', title: 'Explore', el: <Explore /> };
  if ((m = /^\/hosts\/([^/]+)$/.exec(path))) {
    const host = safeDecode(m[1]);
    return { key: '/fleet', title: `Host ${host}`, el: <Host host={host} /> };
  }
  if (path === '/issues') return { key: '/issues', title: 'Issues', el: <Issues /> };
  if ((m = /^\/issues\/([^/]+)$/.exec(path))) return { key: '/issues', title: 'Issue', el: <IssuePage id={safeDecode(m[1])} /> };
  if (path === '/alerts') return { key: '/alerts', title: 'Alerts', el: <Alerts /> };
  if (path === '/rules') return { key: '/rules', title: 'Rules', el: <Rules /> };
  return {
    key: '',
    title: 'Not found',
    el: (
      <>
        <h1>Not found</h1>
        <p>There is no page here.</p>
      </>
    ),
  };
}

function safeDecode(s: string) {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** With read tokens configured: the token goes to the collector, which keeps it in an
 * HttpOnly cookie (never readable by script). */
function Login() {
  const [token, setToken] = useState('');
  const [err, setErr] = useState('');
  return (
    <>
      <h1>Sign in</h1>
      <p>This collector needs a token: a read token (<code>[auth] read_tokens</code>), or an admin token to also resolve and ignore issues.</p>
      <form
        class="filters"
        onSubmit={async (e) => {
          e.preventDefault();
          setErr('');
          try {
            await api('/api/calm/v1/session', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token }) });
            location.reload();
          } catch (x: any) {
            setErr(String(x.message || x));
          }
        }}
      >
        <label>
          Read token <input type="password" autocomplete="current-password" value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        </label>
        <button type="submit" class="primary">Sign in</button>
        {err && <span class="error" role="alert">{err}</span>}
      </form>
    </>
  );
}

function App() {
  const loc = useLocation();
  const [needsToken, setNeedsToken] = useState(false);
  useEffect(() => {
    const f = () => setNeedsToken(true);
    addEventListener('calm-needs-token', f);
    return () => removeEventListener('calm-needs-token', f);
  }, []);
  const p = needsToken ? { key: '', title: 'Sign in', el: <Login /> } : page(loc.path);
  document.title = `${p.title} · Calm`;
  return (
    <>
      <a class="skip" href="#main">Skip to content</a>
      <header>
        <a href="/fleet" class="brand">Calm</a>
        <nav aria-label="Main">
          {NAV.map(([href, label]) => (
            <a key={href} href={href} aria-current={p.key === href ? 'page' : undefined}>
              {label}
            </a>
          ))}
        </nav>
      </header>
      <main id="main" tabIndex={-1}>{p.el}</main>
    </>
  );
}

const root = document.getElementById('app');
if (root) {
  root.textContent = '';
  render(<App />, root);
}
