// The explorer's PromQL editor: CodeMirror 6 with @prometheus-io/codemirror-promql
// (highlighting, linting, completion of functions, metric names, label names and values).
// Built as its own file (dist/editor.js) and loaded by the explorer only, so the other
// pages do not pay for it.
//
// Content-Security-Policy: CodeMirror writes its styles through style-mod, which puts a
// <style> element in a document but uses a constructed stylesheet (adoptedStyleSheets,
// CSSOM) in a shadow root. The editor lives in a shadow root, so no style element is
// ever added and the policy stays `style-src 'self'` with no nonce and no
// 'unsafe-inline' (stylesheets built from script are gated by `script-src 'self'`, like
// element.style, which uPlot already uses).
//
// Completion reads the collector's own API through a client with caps: the metric names
// are fetched once and filtered in one pass to the first MAX_NAMES matches of what is
// typed (prefix matches first), so 100k names never reach CodeMirror's list at once.
// Every name and value reaches the DOM as text (CodeMirror renders labels with text
// nodes; no HTML from data).
import { autocompletion, closeBrackets, closeBracketsKeymap, completionKeymap, startCompletion } from '@codemirror/autocomplete';
import { defaultKeymap, history, historyKeymap, insertNewlineAndIndent } from '@codemirror/commands';
import { bracketMatching, HighlightStyle, syntaxHighlighting } from '@codemirror/language';
import { EditorState, Prec } from '@codemirror/state';
import { drawSelection, EditorView, highlightSpecialChars, keymap, placeholder } from '@codemirror/view';
import { tags } from '@lezer/highlight';
import { PromQLExtension } from '@prometheus-io/codemirror-promql';

/** Most metric names, label names or values offered at once. */
const MAX_NAMES = 500;

export type FetchJson = (path: string) => Promise<any>;

/** The client codemirror-promql completes from: the collector's own API, cached. */
function client(fetchJson: FetchJson) {
  const cache = new Map<string, Promise<any>>();
  const get = (path: string): Promise<any> => {
    let p = cache.get(path);
    if (!p) {
      p = fetchJson(path).then(
        (r) => r?.data,
        (e) => {
          cache.delete(path);
          throw e;
        },
      );
      cache.set(path, p);
    }
    return p;
  };
  const list = (path: string): Promise<string[]> => get(path).then((d) => (Array.isArray(d) ? d : []), () => []);
  const match = (metric?: string) => (metric ? `?match[]=${encodeURIComponent(metric)}` : '');
  return {
    metricNames(prefix?: string): Promise<string[]> {
      return list('/api/v1/label/__name__/values').then((names) => capped(names, prefix || ''));
    },
    labelNames(metric?: string): Promise<string[]> {
      return list(`/api/v1/labels${match(metric)}`).then((n) => n.filter((x) => x !== '__name__').slice(0, MAX_NAMES));
    },
    labelValues(label: string, metric?: string): Promise<string[]> {
      return list(`/api/v1/label/${encodeURIComponent(label)}/values${match(metric)}`).then((v) => v.slice(0, MAX_NAMES));
    },
    metricMetadata(): Promise<Record<string, { type: string; help: string }[]>> {
      return get('/api/v1/metadata').then((d) => (d && typeof d === 'object' ? d : {}), () => ({}));
    },
    series(): Promise<Map<string, string>[]> {
      return Promise.resolve([]);
    },
    flags(): Promise<Record<string, string>> {
      return Promise.resolve({});
    },
  };
}

/** The first MAX_NAMES names containing `word` (case-insensitive), prefix matches first;
 * one pass, stopping once enough prefix matches are found. */
export function capped(names: string[], word: string): string[] {
  if (!word) return names.slice(0, MAX_NAMES);
  const w = word.toLowerCase();
  const prefix: string[] = [];
  const inner: string[] = [];
  for (const n of names) {
    const i = n.toLowerCase().indexOf(w);
    if (i === 0) {
      prefix.push(n);
      if (prefix.length >= MAX_NAMES) break;
    } else if (i > 0 && inner.length < MAX_NAMES) inner.push(n);
  }
  return prefix.concat(inner).slice(0, MAX_NAMES);
}

// Colours come from the page's CSS variables (light and dark), which inherit into the
// shadow root; each has at least 4.5:1 contrast on the editor background.
const highlight = HighlightStyle.define([
  { tag: tags.labelName, color: 'var(--hl-label)' },
  { tag: tags.string, color: 'var(--hl-string)' },
  { tag: tags.number, color: 'var(--hl-number)' },
  { tag: tags.function(tags.variableName), color: 'var(--hl-function)' },
  { tag: [tags.operatorKeyword, tags.modifier, tags.logicOperator, tags.keyword], color: 'var(--hl-keyword)' },
  { tag: tags.comment, color: 'var(--muted)', fontStyle: 'italic' },
  { tag: tags.invalid, color: 'var(--bad)' },
]);

const theme = EditorView.theme({
  '&': { color: 'var(--fg)', backgroundColor: 'var(--bg)', border: '1px solid var(--line)', borderRadius: '4px', fontSize: '14px' },
  '&.cm-focused': { outline: '2px solid var(--accent)', outlineOffset: '1px' },
  '.cm-content': { fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace', padding: '6px 2px', caretColor: 'var(--fg)' },
  '.cm-scroller': { fontFamily: 'inherit' },
  '.cm-placeholder': { color: 'var(--muted)' },
  '.cm-cursor': { borderLeftColor: 'var(--fg)' },
  '&.cm-focused .cm-selectionBackground, .cm-selectionBackground': { backgroundColor: 'var(--sel)' },
  '.cm-tooltip': { backgroundColor: 'var(--panel)', color: 'var(--fg)', border: '1px solid var(--line)' },
  '.cm-tooltip-autocomplete > ul': { fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace', maxHeight: '16em' },
  '.cm-tooltip-autocomplete > ul > li': { padding: '2px 6px' },
  '.cm-tooltip-autocomplete > ul > li[aria-selected]': { backgroundColor: 'var(--sel)', color: 'var(--fg)' },
  '.cm-completionDetail': { color: 'var(--muted)', fontStyle: 'normal', marginLeft: '8px' },
  '.cm-completionIcon': { display: 'none' },
  '.cm-completionMatchedText': { textDecoration: 'none', fontWeight: '700' },
  '.cm-completionInfo': { maxWidth: '40ch', whiteSpace: 'pre-wrap' },
  '.cm-diagnostic-error': { borderLeftColor: 'var(--bad)' },
  '.cm-matchingBracket': { backgroundColor: 'var(--sel)', color: 'inherit' },
});

export type EditorOptions = {
  value: string;
  label: string;
  placeholder: string;
  onChange: (v: string) => void;
  onRun: (v: string) => void;
  fetchJson: FetchJson;
};
export type EditorHandle = { setValue: (v: string) => void; focus: () => void; destroy: () => void };

/** Mounts an editor in `host` (in its shadow root). Enter runs the query (when no
 * completion is open), Shift-Enter adds a line. */
export function mountEditor(host: HTMLElement, o: EditorOptions): EditorHandle {
  const root = host.shadowRoot || host.attachShadow({ mode: 'open' });
  const promql = new PromQLExtension().setComplete({ remote: client(o.fetchJson), maxMetricsMetadata: MAX_NAMES });
  let onChange = o.onChange;
  const view = new EditorView({
    root,
    parent: root as unknown as Element,
    state: EditorState.create({
      doc: o.value,
      extensions: [
        history(),
        drawSelection(),
        highlightSpecialChars(),
        bracketMatching(),
        closeBrackets(),
        autocompletion({ activateOnTyping: true, icons: false, maxRenderedOptions: 60 }),
        // Ahead of the default keys (and under the completion keys, which take Enter
        // while a list is open).
        Prec.high(
          keymap.of([
            { key: 'Enter', run: (v) => (o.onRun(v.state.doc.toString()), true), shift: insertNewlineAndIndent },
            { key: 'Ctrl-Space', run: startCompletion },
          ]),
        ),
        Prec.highest(keymap.of(completionKeymap)),
        keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap]),
        placeholder(o.placeholder),
        EditorView.lineWrapping,
        EditorView.contentAttributes.of({ 'aria-label': o.label, 'aria-multiline': 'true', role: 'textbox' }),
        promql.asExtension(),
        syntaxHighlighting(highlight),
        theme,
        EditorView.updateListener.of((u) => {
          if (u.docChanged) onChange(u.state.doc.toString());
        }),
      ],
    }),
  });
  return {
    setValue(v: string) {
      if (v === view.state.doc.toString()) return;
      const was = onChange;
      onChange = () => {};
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: v } });
      onChange = was;
    },
    focus: () => view.focus(),
    destroy: () => {
      view.destroy();
      promql.destroy();
    },
  };
}
