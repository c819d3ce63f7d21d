//! The process's `metrics` recorder behind the worker's `GET /metrics`: every series is a few
//! atomics, and the page is written in the Prometheus text format (version 0.0.4).
//!
//! # Why a recorder of our own, not `metrics-exporter-prometheus`
//! The exporter rebuilds every series at each render: it sanitizes the name, turns the key's
//! labels into a fresh label set, files it in a hash map and formats it, about 4 µs a series
//! (measured: 120 ms for a page of 30,000 counters, `bench --scenario scrape`). The target is a
//! scrape of 100 queues × 50 task names within 10 ms. Here a series renders its labels once, when
//! it is registered, into its family's list; a scrape walks the lists and writes numbers.
//! Histograms have fixed buckets ([`BUCKETS`]), so recording a sample is two atomic adds, with
//! no buffer to drain.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};

/// Upper bounds of the `_seconds` histograms' buckets: 1 ms to 5 min (and `+Inf`).
pub(crate) const BUCKETS: [f64; 16] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// A [`Key`]'s own precomputed hash, used as it is.
#[derive(Default)]
struct KeyHash(u64);

impl Hasher for KeyHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `Key` writes only its u64; anything else still hashes, if slowly.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// An f64 kept in an atomic's bits.
#[derive(Debug, Default)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    fn add(&self, v: f64) {
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| Some((f64::from_bits(bits) + v).to_bits()));
    }
}

#[derive(Debug, Default)]
struct CounterCell(AtomicU64);

impl CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct GaugeCell(AtomicF64);

impl GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.0.add(value);
    }

    fn decrement(&self, value: f64) {
        self.0.add(-value);
    }

    fn set(&self, value: f64) {
        self.0.set(value);
    }
}

/// Per bucket the samples at most its bound (not cumulative: the page adds them up), the last
/// one for the samples above every bound, and the samples' sum.
#[derive(Debug, Default)]
struct HistogramCell {
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum: AtomicF64,
}

impl HistogramFn for HistogramCell {
    fn record(&self, value: f64) {
        self.counts[BUCKETS.partition_point(|b| *b < value)].fetch_add(1, Ordering::Relaxed);
        self.sum.add(value);
    }
}

#[derive(Clone, Debug)]
enum Cell {
    Counter(Arc<CounterCell>),
    Gauge(Arc<GaugeCell>),
    Histogram(Arc<HistogramCell>),
}

/// One series: its labels as they are written between the braces, and its value.
#[derive(Clone, Debug)]
struct Series {
    labels: String,
    cell: Cell,
}

/// One name's series, in the order they were registered.
#[derive(Debug)]
struct Family {
    name: String,
    series: Vec<Series>,
}

/// What the lock guards: each series by key, and by family for the page.
#[derive(Debug, Default)]
struct Index {
    by_key: HashMap<Key, Cell, BuildHasherDefault<KeyHash>>,
    families: Vec<Family>,
}

/// Every series of the process. Registering takes the write lock once per series; the engine
/// keeps the handles it gets, so the hot path never comes here.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    series: RwLock<Index>,
}

impl Registry {
    fn register(&self, key: &Key, make: impl FnOnce() -> Cell) -> Cell {
        if let Some(cell) = self.series.read().unwrap_or_else(|e| e.into_inner()).by_key.get(key) {
            return cell.clone();
        }
        let mut all = self.series.write().unwrap_or_else(|e| e.into_inner());
        let all = &mut *all;
        if let Some(cell) = all.by_key.get(key) {
            return cell.clone();
        }
        let cell = make();
        all.by_key.insert(key.clone(), cell.clone());
        let at = match all.families.iter().position(|f| f.name == key.name()) {
            Some(at) => at,
            None => {
                all.families.push(Family { name: key.name().to_owned(), series: Vec::new() });
                all.families.sort_unstable_by(|a, b| a.name.cmp(&b.name));
                all.families.iter().position(|f| f.name == key.name()).unwrap_or_default()
            }
        };
        all.families[at].series.push(Series { labels: labels_of(key), cell: cell.clone() });
        cell
    }

    /// The page of every series: families by name, each family's series in the order they
    /// were first recorded (Prometheus wants a family's lines together, in no order).
    pub(crate) fn render(&self) -> String {
        let all = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut page = String::with_capacity(all.by_key.len() * 96);
        let bounds: Vec<String> = BUCKETS.iter().map(|b| format!("{b}")).collect();
        for family in &all.families {
            let name = family.name.as_str();
            let Some(first) = family.series.first() else { continue };
            let kind = match first.cell {
                Cell::Counter(_) => "counter",
                Cell::Gauge(_) => "gauge",
                Cell::Histogram(_) => "histogram",
            };
            let _ = writeln!(page, "# TYPE {name} {kind}");
            for s in &family.series {
                match &s.cell {
                    Cell::Counter(c) => line(&mut page, name, "", &s.labels, None, Value::Int(c.0.load(Ordering::Relaxed))),
                    Cell::Gauge(g) => line(&mut page, name, "", &s.labels, None, Value::Float(g.0.get())),
                    Cell::Histogram(h) => {
                        let mut seen = 0u64;
                        for (bound, count) in bounds.iter().zip(&h.counts) {
                            seen += count.load(Ordering::Relaxed);
                            line(&mut page, name, "_bucket", &s.labels, Some(bound), Value::Int(seen));
                        }
                        seen += h.counts[BUCKETS.len()].load(Ordering::Relaxed);
                        line(&mut page, name, "_bucket", &s.labels, Some("+Inf"), Value::Int(seen));
                        line(&mut page, name, "_sum", &s.labels, None, Value::Float(h.sum.get()));
                        line(&mut page, name, "_count", &s.labels, None, Value::Int(seen));
                    }
                }
            }
        }
        page
    }
}

/// A sample's value.
enum Value {
    Int(u64),
    Float(f64),
}

/// `name{labels} value`, without braces when there are no labels; `le` is a bucket's bound.
/// Written with `push_str` and `itoa`: most of a page is counters, and `write!` took a third of
/// the render.
fn line(page: &mut String, name: &str, suffix: &str, labels: &str, le: Option<&str>, value: Value) {
    page.push_str(name);
    page.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        page.push('{');
        page.push_str(labels);
        if let Some(le) = le {
            if !labels.is_empty() {
                page.push(',');
            }
            page.push_str("le=\"");
            page.push_str(le);
            page.push('"');
        }
        page.push('}');
    }
    page.push(' ');
    match value {
        Value::Int(n) => page.push_str(itoa::Buffer::new().format(n)),
        Value::Float(v) => {
            let _ = write!(page, "{}", Number(v));
        }
    }
    page.push('\n');
}

/// A sample value as Prometheus spells it.
struct Number(f64);

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            v if v.is_nan() => f.write_str("NaN"),
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            v => write!(f, "{v}"),
        }
    }
}

/// `k="v",…` with each value escaped as the text format wants.
fn labels_of(key: &Key) -> String {
    let mut out = String::new();
    for (i, label) in key.labels().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(label.key());
        out.push_str("=\"");
        for c in label.value().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

/// The recorder installed for the process (see [`super::http`]).
#[derive(Debug, Default)]
pub(crate) struct Recorder(pub(crate) Arc<Registry>);

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match self.0.register(key, || Cell::Counter(Arc::default())) {
            Cell::Counter(c) => Counter::from_arc(c),
            _ => Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        match self.0.register(key, || Cell::Gauge(Arc::default())) {
            Cell::Gauge(g) => Gauge::from_arc(g),
            _ => Gauge::noop(),
        }
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match self.0.register(key, || Cell::Histogram(Arc::default())) {
            Cell::Histogram(h) => Histogram::from_arc(h),
            _ => Histogram::noop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use metrics::{Key, Label, Recorder as _};

    use super::*;

    fn meta() -> Metadata<'static> {
        Metadata::new("t", metrics::Level::INFO, None)
    }

    #[test]
    fn a_page_has_one_type_line_per_family_with_its_series_in_first_recorded_order() {
        let r = Recorder::default();
        let key = |q: &str| Key::from_parts("jobs_total", vec![Label::new("queue", q.to_owned())]);
        r.register_counter(&key("b"), &meta()).increment(2);
        r.register_counter(&key("a"), &meta()).increment(1);
        r.register_counter(&key("b"), &meta()).increment(3);
        r.register_gauge(&Key::from_name("in_flight"), &meta()).set(1.5);
        assert_eq!(
            r.0.render(),
            "# TYPE in_flight gauge\nin_flight 1.5\n# TYPE jobs_total counter\njobs_total{queue=\"b\"} 5\njobs_total{queue=\"a\"} 1\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_count_a_sample_on_its_bound() {
        let r = Recorder::default();
        let h = r.register_histogram(&Key::from_parts("run_seconds", vec![Label::new("task", "t")]), &meta());
        for v in [0.001, 0.002, 0.5, 1000.0] {
            h.record(v);
        }
        let page = r.0.render();
        let lines: Vec<&str> = page.lines().collect();
        assert_eq!(lines[0], "# TYPE run_seconds histogram");
        assert_eq!(lines[1], "run_seconds_bucket{task=\"t\",le=\"0.001\"} 1", "a sample equal to a bound is in its bucket");
        assert_eq!(lines[2], "run_seconds_bucket{task=\"t\",le=\"0.0025\"} 2");
        assert!(lines.contains(&"run_seconds_bucket{task=\"t\",le=\"0.5\"} 3"), "{page}");
        assert!(lines.contains(&"run_seconds_bucket{task=\"t\",le=\"300\"} 3"), "{page}");
        assert!(lines.contains(&"run_seconds_bucket{task=\"t\",le=\"+Inf\"} 4"), "{page}");
        assert!(lines.contains(&"run_seconds_sum{task=\"t\"} 1000.503"), "{page}");
        assert!(lines.contains(&"run_seconds_count{task=\"t\"} 4"), "{page}");
    }

    #[test]
    fn label_values_are_escaped() {
        let key = Key::from_parts("x", vec![Label::new("task", "a\"b\\c\nd")]);
        assert_eq!(labels_of(&key), r#"task="a\"b\\c\nd""#);
    }
}
