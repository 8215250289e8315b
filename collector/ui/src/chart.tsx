// A uPlot chart. Series labels reach the DOM only as text: uPlot writes legend labels
// and values with textContent, and this file adds no HTML of its own.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { useEffect, useRef } from 'preact/hooks';
import { num } from './lib';

export type Line = { label: string; points: [number, number][] };

const PALETTE = ['#2f6fb3', '#d9480f', '#2b8a3e', '#862e9c', '#c2255c', '#1098ad', '#e67700', '#5c940d', '#364fc7', '#a61e4d'];

function cssVar(name: string, fallback: string) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

/** Aligns lines on the union of their timestamps; stacked adds them up in order. */
export function align(lines: Line[], stacked: boolean): uPlot.AlignedData {
  const ts = new Set<number>();
  for (const l of lines) for (const [t] of l.points) ts.add(t);
  const xs = Array.from(ts).sort((a, b) => a - b);
  const idx = new Map(xs.map((t, i) => [t, i]));
  const ys = lines.map((l) => {
    const y: (number | null)[] = new Array(xs.length).fill(null);
    for (const [t, v] of l.points) y[idx.get(t)!] = isFinite(v) ? v : null;
    return y;
  });
  if (stacked) {
    for (let s = 1; s < ys.length; s++)
      for (let i = 0; i < xs.length; i++) {
        const prev = ys[s - 1][i];
        if (ys[s][i] !== null && prev !== null) ys[s][i] = (ys[s][i] as number) + prev;
      }
  }
  return [xs, ...ys] as uPlot.AlignedData;
}

const pad = (n: number) => String(n).padStart(2, '0');

/** Time axis labels that fit a narrow chart: `HH:MM` (with seconds when the ticks are
 * under a minute apart), `MM-DD` over several days, and the date under the first tick
 * and under each midnight so a day change is visible. uPlot's own labels put a long
 * date on the first tick (`12/6/26 2:05pm`), which ran into the next one on a phone. */
export function timeLabels(_u: uPlot, splits: number[]): string[] {
  const step = splits.length > 1 ? splits[1] - splits[0] : 60;
  let prevDay = '';
  return splits.map((t, i) => {
    const d = new Date(t * 1000);
    const day = `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    const newDay = day !== prevDay;
    prevDay = day;
    if (step >= 86400) return day;
    const time = step < 60 ? `${hm}:${pad(d.getSeconds())}` : hm;
    return i === 0 || newDay ? `${time}\n${day}` : time;
  });
}

export function Chart(props: { lines: Line[]; stacked?: boolean; height?: number; title: string; unit?: (v: number) => string }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const fmt = props.unit || num;
    const axis = cssVar('--muted', '#555');
    const grid = cssVar('--grid', 'rgba(0,0,0,0.08)');
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: props.height || 260,
      legend: { show: true, live: true },
      cursor: { focus: { prox: 16 } },
      scales: { x: { time: true } },
      axes: [
        { stroke: axis, grid: { stroke: grid }, ticks: { stroke: grid }, space: 64, values: timeLabels },
        { stroke: axis, grid: { stroke: grid }, ticks: { stroke: grid }, size: 84, values: (_u, vals) => vals.map((v) => fmt(v)) },
      ],
      series: [
        { label: 'time' },
        ...props.lines.map((l, i) => ({
          label: l.label,
          stroke: PALETTE[i % PALETTE.length],
          width: 1.5,
          fill: props.stacked ? PALETTE[i % PALETTE.length] + '33' : undefined,
          value: (_u: uPlot, v: number | null) => (v === null || v === undefined ? '—' : fmt(v)),
          points: { show: false },
        })),
      ],
    };
    const u = new uPlot(opts, align(props.lines, !!props.stacked), el);
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(200, el.clientWidth), height: props.height || 260 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
    };
  }, [props.lines, props.stacked, props.height]);
  return <div class="chart" ref={box} role="figure" aria-label={props.title} data-series={props.lines.length} data-points={props.lines.reduce((n, l) => n + l.points.length, 0)} />;
}
