// The Prometheus text exposition format, parsed, and the few sums the System panel needs.

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/g;

function unescape(value) {
  return value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
}

// [{name, labels: {k: v}, value}] for every sample line (comments and blanks skipped).
export function parse(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) for (const [, k, v] of m[2].matchAll(LABEL)) labels[k] = unescape(v);
    const value = m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : Number(m[3]);
    samples.push({ name: m[1], labels, value });
  }
  return samples;
}

function matches(labels, want) {
  return Object.entries(want).every(([k, v]) =>
    typeof v === "function" ? v(labels[k]) : labels[k] === v,
  );
}

// Sum of the samples named `name` whose labels match `want` (a value, or a predicate).
export function sum(samples, name, want = {}) {
  let total = 0;
  for (const s of samples) if (s.name === name && matches(s.labels, want)) total += s.value;
  return total;
}

// Cumulative bucket counts of a histogram, summed over the other labels: [[le, count], ...].
export function buckets(samples, name, want = {}) {
  const byLe = new Map();
  for (const s of samples) {
    if (s.name !== `${name}_bucket` || !matches(s.labels, want)) continue;
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    byLe.set(le, (byLe.get(le) || 0) + s.value);
  }
  return [...byLe.entries()].sort((a, b) => a[0] - b[0]);
}

// Bucket-wise difference of two cumulative histograms (now - before).
export function minus(now, before) {
  const old = new Map(before);
  return now.map(([le, c]) => [le, c - (old.get(le) || 0)]);
}

// The q-quantile of cumulative buckets, interpolated linearly inside the bucket as
// Prometheus's histogram_quantile does; null without observations.
export function quantile(q, cumulative) {
  if (!cumulative.length) return null;
  const total = cumulative[cumulative.length - 1][1];
  if (!(total > 0)) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, count] of cumulative) {
    if (count >= rank) {
      if (le === Infinity) return lower; // beyond the last finite bound
      const inBucket = count - below;
      return inBucket > 0 ? lower + ((le - lower) * (rank - below)) / inBucket : le;
    }
    lower = le;
    below = count;
  }
  return lower;
}
