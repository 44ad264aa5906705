//! Process-wide counters for the Prometheus metrics (`/metrics` on the admin host):
//! a counter is a name and at most one label, bumped from anywhere with [`inc`];
//! [`render`] writes them in the Prometheus text format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};

type Key = (&'static str, Option<(&'static str, String)>);

static COUNTERS: LazyLock<Mutex<BTreeMap<Key, u64>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

/// Adds one to the counter `name` (with the label `label = value`, if given).
pub fn inc(name: &'static str, label: Option<(&'static str, &str)>) {
    let key = (name, label.map(|(k, v)| (k, v.to_string())));
    let mut counters = COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
    *counters.entry(key).or_insert(0) += 1;
}

/// The current value of a counter (0 if never bumped).
pub fn value(name: &'static str, label: Option<(&'static str, &str)>) -> u64 {
    let key = (name, label.map(|(k, v)| (k, v.to_string())));
    let counters = COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
    counters.get(&key).copied().unwrap_or(0)
}

/// Escapes a label value (Prometheus text format: backslash, quote, newline).
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every counter in the Prometheus text format, one `# TYPE` line per name.
pub fn render() -> String {
    let counters = COUNTERS.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::new();
    let mut last = "";
    for ((name, label), value) in counters.iter() {
        if *name != last {
            let _ = writeln!(out, "# TYPE {name} counter");
            last = name;
        }
        match label {
            Some((k, v)) => {
                let _ = writeln!(out, "{name}{{{k}=\"{}\"}} {value}", escape(v));
            }
            None => {
                let _ = writeln!(out, "{name} {value}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_labels() {
        inc("test_metric_total", Some(("reason", "a\"b")));
        inc("test_metric_total", Some(("reason", "a\"b")));
        inc("test_other_total", None);
        assert_eq!(value("test_metric_total", Some(("reason", "a\"b"))), 2);
        let text = render();
        assert!(
            text.contains(
                "# TYPE test_metric_total counter\ntest_metric_total{reason=\"a\\\"b\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains("test_other_total 1\n"), "{text}");
    }
}
