import { api, useLoad, agoSecs, bytes, abs } from './lib';
import { Status } from './main';

/** Seconds without a heartbeat after which an agent counts as silent (3 × the 30 s default). */
export const SILENT_AFTER = 90;

type Agent = {
  id: string;
  host?: string;
  version?: string;
  uptime_seconds?: number;
  spool_bytes?: number;
  spool_entries?: number;
  spool_dropped?: number;
  shipped?: number;
  rejected?: number;
  retries?: number;
  last_error?: string | null;
  last_seen?: string;
  seconds_since_seen?: number;
};

const str = (v: unknown) => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));
const n = (v: unknown) => (typeof v === 'number' ? v : undefined);

export function Fleet() {
  const st = useLoad(() => api<{ agents: Agent[] }>('/api/calm/v1/agents'), []);
  const agents = st.data?.agents || [];
  const silent = agents.filter((a) => (n(a.seconds_since_seen) ?? 0) > SILENT_AFTER).length;
  return (
    <>
      <h1>Fleet</h1>
      <Status st={st} />
      {st.data && (
        <p class="summary">
          {agents.length} agent{agents.length === 1 ? '' : 's'}, {silent} silent (no heartbeat for over {SILENT_AFTER} s).{' '}
          <button type="button" onClick={st.reload}>Refresh</button>
        </p>
      )}
      {agents.length > 0 && (
        <div class="scroll" tabIndex={0} role="region" aria-label="Agents">
          <table class="grid" id="fleet">
            <thead>
              <tr>
                <th scope="col">Host</th>
                <th scope="col">Agent</th>
                <th scope="col">Version</th>
                <th scope="col">Last heartbeat</th>
                <th scope="col" class="num">Spool</th>
                <th scope="col" class="num">Dropped</th>
                <th scope="col" class="num">Shipped</th>
                <th scope="col">Last error</th>
              </tr>
            </thead>
            <tbody>
              {agents.map((a) => {
                const quiet = (n(a.seconds_since_seen) ?? 0) > SILENT_AFTER;
                const host = str(a.host) || str(a.id);
                return (
                  <tr key={str(a.id)} class={quiet ? 'silent' : ''} data-agent={str(a.id)}>
                    <td>
                      <a href={`/hosts/${encodeURIComponent(host)}`}>{host}</a>
                      {quiet && <span class="badge bad">silent</span>}
                    </td>
                    <td class="mono">{str(a.id)}</td>
                    <td>{str(a.version)}</td>
                    <td title={abs(a.last_seen)}>{agoSecs(n(a.seconds_since_seen) ?? NaN)}</td>
                    <td class="num">
                      {bytes(n(a.spool_bytes))} / {n(a.spool_entries) ?? '—'}
                    </td>
                    <td class={'num' + ((n(a.spool_dropped) ?? 0) > 0 ? ' warn' : '')}>{n(a.spool_dropped) ?? '—'}</td>
                    <td class="num">{n(a.shipped) ?? '—'}</td>
                    <td class="err">{str(a.last_error)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {st.data && agents.length === 0 && <p>No agent has sent a heartbeat yet. Start <code>calm-agent --collector URL</code> on a host.</p>}
    </>
  );
}
