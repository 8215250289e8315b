// Alerts (alerting rules with their active alerts, state filters with counts in the URL)
// and rules (groups, every rule's health, last evaluation and error).
import { abs, ago, api, navigate, useLoad, useLocation } from './lib';
import { Status } from './main';
import { writeView } from './explore';

type Alert = { labels: Record<string, string>; annotations: Record<string, string>; state: string; activeAt: string; value: string };
type Rule = {
  name: string;
  query: string;
  type: 'alerting' | 'recording';
  state?: string;
  health: string;
  lastError?: string;
  lastEvaluation?: string;
  evaluationTime?: number;
  duration?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  alerts?: Alert[];
};
type Group = { name: string; file: string; interval: number; lastEvaluation?: string; evaluationTime?: number; rules: Rule[] };

const STATES = ['firing', 'pending', 'inactive'];
const s = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));

function Labels(props: { labels?: Record<string, string> }) {
  const e = Object.entries(props.labels || {});
  if (!e.length) return null;
  return (
    <ul class="labels" aria-label="Labels">
      {e.map(([k, v]) => (
        <li key={k} class="label">
          {k}={v}
        </li>
      ))}
    </ul>
  );
}

function queryLink(q: string) {
  return writeView({ exprs: [q], tab: 'table', range: '1h', step: '', stacked: false });
}

function useRules(type?: string) {
  return useLoad(() => api<{ data: { groups: Group[] } }>(`/api/v1/rules${type ? `?type=${type}` : ''}`).then((r) => r.data.groups || []), []);
}

export function Alerts() {
  const loc = useLocation();
  const st = useRules('alert');
  const raw = loc.search.get('state');
  const shown = new Set(raw === null ? STATES : raw.split(',').filter((x) => STATES.includes(x)));
  const find = loc.search.get('search') || '';
  const groups = st.data || [];
  const counts: Record<string, number> = { firing: 0, pending: 0, inactive: 0 };
  for (const g of groups) for (const r of g.rules) counts[s(r.state) || 'inactive'] = (counts[s(r.state) || 'inactive'] || 0) + 1;
  const toggle = (x: string) => {
    const n = new Set(shown);
    if (n.has(x)) n.delete(x);
    else n.add(x);
    const p = new URLSearchParams(loc.search);
    p.set('state', STATES.filter((y) => n.has(y)).join(','));
    navigate(`/alerts?${p.toString()}`, true);
  };
  const f = find.toLowerCase();
  return (
    <>
      <h1>Alerts</h1>
      <div class="filters" role="group" aria-label="Filter by state">
        {STATES.map((x) => (
          <button key={x} type="button" class={`state-filter st-${x}`} aria-pressed={shown.has(x)} onClick={() => toggle(x)}>
            {x} ({counts[x]})
          </button>
        ))}
        <label>
          Search{' '}
          <input
            type="search"
            value={find}
            onChange={(e) => {
              const p = new URLSearchParams(loc.search);
              const v = e.currentTarget.value;
              if (v) p.set('search', v);
              else p.delete('search');
              navigate(`/alerts?${p.toString()}`, true);
            }}
          />
        </label>
      </div>
      <Status st={st} />
      {groups.map((g) => {
        const rules = g.rules.filter((r) => shown.has(s(r.state) || 'inactive') && (!f || JSON.stringify(r).toLowerCase().includes(f)));
        if (!rules.length) return null;
        return (
          <section key={g.file + g.name} class="group" aria-label={`Group ${g.name}`}>
            <h2>
              {g.name} <span class="muted small mono">{g.file}</span>
            </h2>
            {rules.map((r) => (
              <details key={r.name + r.query} class={`rule st-${s(r.state)}`} open={r.state === 'firing' || r.state === 'pending'}>
                <summary>
                  <span class={`badge st-${s(r.state)}`}>{s(r.state)}</span> <strong>{r.name}</strong>{' '}
                  {r.alerts && r.alerts.length > 0 && <span class="muted">({r.alerts.length} active)</span>}
                  {r.health !== 'ok' && <span class="badge bad">{s(r.health)}</span>}
                </summary>
                <p>
                  <a class="mono" href={queryLink(r.query)}>{r.query}</a>
                  {r.duration ? <span class="muted"> for {r.duration}s</span> : null}
                </p>
                {r.lastError && <p class="error">{s(r.lastError)}</p>}
                <Labels labels={r.labels} />
                {(r.alerts || []).length > 0 && (
                  <div class="scroll" tabIndex={0} role="region" aria-label={`Active alerts of ${r.name}`}>
                    <table class="grid alerts">
                      <thead>
                        <tr>
                          <th scope="col">State</th>
                          <th scope="col">Labels</th>
                          <th scope="col">Annotations</th>
                          <th scope="col">Active since</th>
                          <th scope="col" class="num">Value</th>
                        </tr>
                      </thead>
                      <tbody>
                        {(r.alerts || []).map((a, i) => (
                          <tr key={i} class="alert-row">
                            <td>
                              <span class={`badge st-${s(a.state)}`}>{s(a.state)}</span>
                            </td>
                            <td>
                              <Labels labels={a.labels} />
                            </td>
                            <td>
                              <dl class="annotations">
                                {Object.entries(a.annotations || {}).map(([k, v]) => (
                                  <div key={k}>
                                    <dt>{k}</dt>
                                    <dd>{s(v)}</dd>
                                  </div>
                                ))}
                              </dl>
                            </td>
                            <td title={abs(a.activeAt)}>{ago(a.activeAt)}</td>
                            <td class="num mono">{s(a.value)}</td>
                          </tr>
                        ))}
                      </tbody>
                    </table>
                  </div>
                )}
              </details>
            ))}
          </section>
        );
      })}
      {st.data && groups.length === 0 && <p class="muted">No alerting rules are loaded (see rule_files in the collector's config).</p>}
    </>
  );
}

export function Rules() {
  const st = useRules();
  const groups = st.data || [];
  return (
    <>
      <h1>Rules</h1>
      <Status st={st} />
      {groups.map((g) => (
        <section key={g.file + g.name} class="group" aria-label={`Group ${g.name}`}>
          <h2>
            {g.name} <span class="muted small mono">{g.file}</span>
          </h2>
          <p class="muted small">
            every {g.interval}s · last evaluation <span title={abs(g.lastEvaluation)}>{ago(g.lastEvaluation)}</span> · took {((g.evaluationTime || 0) * 1000).toFixed(1)} ms
          </p>
          <div class="scroll" tabIndex={0} role="region" aria-label={`Rules of ${g.name}`}>
            <table class="grid rules">
              <thead>
                <tr>
                  <th scope="col">Rule</th>
                  <th scope="col">Type</th>
                  <th scope="col">State</th>
                  <th scope="col">Health</th>
                  <th scope="col">Last evaluation</th>
                  <th scope="col" class="num">Took</th>
                  <th scope="col">Error</th>
                </tr>
              </thead>
              <tbody>
                {g.rules.map((r) => (
                  <tr key={r.name + r.query}>
                    <td>
                      <strong>{r.name}</strong>
                      <div>
                        <a class="mono small" href={queryLink(r.query)}>{r.query}</a>
                      </div>
                    </td>
                    <td>{r.type}</td>
                    <td>{r.type === 'alerting' ? <span class={`badge st-${s(r.state)}`}>{s(r.state)}</span> : '—'}</td>
                    <td>
                      <span class={r.health === 'ok' ? 'badge ok' : 'badge bad'}>{s(r.health)}</span>
                    </td>
                    <td title={abs(r.lastEvaluation)}>{ago(r.lastEvaluation)}</td>
                    <td class="num">{((r.evaluationTime || 0) * 1000).toFixed(2)} ms</td>
                    <td class="error">{s(r.lastError)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </section>
      ))}
      {st.data && groups.length === 0 && <p class="muted">No rules are loaded.</p>}
    </>
  );
}
