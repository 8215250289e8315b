// The explorer's Tree tab: a query's syntax tree from /api/v1/parse_query (Prometheus
// 3's shape), drawn as nested lists like Prometheus' "Explain" view: each node with its
// own part of the query, its kind, and its whole text; a selector node runs alone when
// clicked. Text only (Preact escapes it); the PromQL text of a node is rebuilt here.

export type Matcher = { type: string; name: string; value: string };
export type PromNode = {
  type: string;
  [k: string]: any;
};

const UNITS: [string, number][] = [
  ['y', 365 * 24 * 3600 * 1000],
  ['w', 7 * 24 * 3600 * 1000],
  ['d', 24 * 3600 * 1000],
  ['h', 3600 * 1000],
  ['m', 60 * 1000],
  ['s', 1000],
  ['ms', 1],
];

/** Milliseconds as a PromQL duration (`1h30m`, `0s`). */
export function duration(ms: number): string {
  if (!ms) return '0s';
  let rest = Math.abs(ms);
  let out = ms < 0 ? '-' : '';
  for (const [u, n] of UNITS) {
    if (rest >= n) {
      out += `${Math.floor(rest / n)}${u}`;
      rest %= n;
    }
  }
  return out;
}

const str = (s: string) => JSON.stringify(s);
const labelList = (ls: string[]) => `(${ls.join(', ')})`;

function modifiers(n: PromNode): string {
  let out = '';
  if (n.timestamp !== null && n.timestamp !== undefined) out += ` @ ${(n.timestamp / 1000).toFixed(3).replace(/\.?0+$/, '')}`;
  else if (n.startOrEnd) out += ` @ ${n.startOrEnd}()`;
  if (n.offset) out += ` offset ${duration(n.offset)}`;
  return out;
}

function selectorText(n: PromNode): string {
  const ms: Matcher[] = (n.matchers || []).filter((m: Matcher) => !(n.name && m.name === '__name__' && m.type === '=' && m.value === n.name));
  const inner = ms.map((m) => `${m.name}${m.type}${str(m.value)}`).join(', ');
  return `${n.name || ''}${inner || !n.name ? `{${inner}}` : ''}`;
}

/** The node's own part: an operator with its modifiers, a function name, or the whole
 * leaf. */
export function label(n: PromNode): string {
  switch (n.type) {
    case 'aggregation':
      return `${n.op}${n.without || (n.grouping || []).length ? ` ${n.without ? 'without' : 'by'} ${labelList(n.grouping || [])}` : ''}`;
    case 'binaryExpr': {
      let s = n.op;
      if (n.bool) s += ' bool';
      const m = n.matching;
      if (m) {
        if (m.on || (m.labels || []).length) s += ` ${m.on ? 'on' : 'ignoring'}${labelList(m.labels || [])}`;
        if (m.card === 'many-to-one') s += ` group_left${labelList(m.include || [])}`;
        if (m.card === 'one-to-many') s += ` group_right${labelList(m.include || [])}`;
      }
      return s;
    }
    case 'call':
      return `${n.func?.name}()`;
    case 'subquery':
      return `[${duration(n.range)}:${n.step ? duration(n.step) : ''}]${modifiers(n)}`;
    case 'parenExpr':
      return '( … )';
    case 'unaryExpr':
      return `${n.op} …`;
    default:
      return text(n);
  }
}

/** The node's PromQL text. */
export function text(n: PromNode | null | undefined): string {
  if (!n) return '';
  switch (n.type) {
    case 'vectorSelector':
      return selectorText(n) + modifiers(n);
    case 'matrixSelector':
      return `${selectorText(n)}[${duration(n.range)}]${modifiers(n)}`;
    case 'subquery':
      return `${text(n.expr)}[${duration(n.range)}:${n.step ? duration(n.step) : ''}]${modifiers(n)}`;
    case 'aggregation':
      return `${label(n)} (${n.param ? `${text(n.param)}, ` : ''}${text(n.expr)})`;
    case 'binaryExpr':
      return `${text(n.lhs)} ${label(n)} ${text(n.rhs)}`;
    case 'call':
      return `${n.func?.name}(${(n.args || []).map(text).join(', ')})`;
    case 'numberLiteral':
      return String(n.val);
    case 'stringLiteral':
      return str(String(n.val));
    case 'parenExpr':
      return `(${text(n.expr)})`;
    case 'unaryExpr':
      return `${n.op}${text(n.expr)}`;
    default:
      return '';
  }
}

function children(n: PromNode): PromNode[] {
  switch (n.type) {
    case 'aggregation':
      return [n.param, n.expr].filter(Boolean);
    case 'binaryExpr':
      return [n.lhs, n.rhs];
    case 'call':
      return n.args || [];
    case 'subquery':
    case 'parenExpr':
    case 'unaryExpr':
      return [n.expr];
    default:
      return [];
  }
}

const KIND: Record<string, string> = {
  vectorSelector: 'instant vector selector',
  matrixSelector: 'range vector selector',
  subquery: 'subquery',
  aggregation: 'aggregation',
  binaryExpr: 'binary operator',
  call: 'function call',
  numberLiteral: 'number',
  stringLiteral: 'string',
  parenExpr: 'parentheses',
  unaryExpr: 'unary operator',
};

function Node(props: { node: PromNode; onRun: (text: string, range: boolean) => void }) {
  const n = props.node;
  const kids = children(n);
  const whole = text(n);
  const own = label(n);
  const selector = n.type === 'vectorSelector' || n.type === 'matrixSelector';
  return (
    <li class="tree-node" data-type={n.type}>
      <div class="tree-head">
        {selector ? (
          <button type="button" class="node-run mono" title={n.type === 'matrixSelector' ? 'Show this selector alone (table)' : 'Graph this selector alone'} onClick={() => props.onRun(whole, n.type === 'matrixSelector')}>
            {own}
          </button>
        ) : (
          <code class="node-own">{own}</code>
        )}
        <span class="muted small"> {KIND[n.type] || n.type}</span>
        {kids.length > 0 && <div class="node-text mono small muted">{whole}</div>}
      </div>
      {kids.length > 0 && (
        <ul>
          {kids.map((k, i) => (
            <Node key={i} node={k} onRun={props.onRun} />
          ))}
        </ul>
      )}
    </li>
  );
}

export function Tree(props: { node: PromNode; onRun: (text: string, range: boolean) => void }) {
  return (
    <ul class="tree-root">
      <Node node={props.node} onRun={props.onRun} />
    </ul>
  );
}
