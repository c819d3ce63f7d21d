//! CI's check of the harness: every scenario completes a tiny run on SQLite and reports sane
//! numbers (no timing is asserted: benchmarks are not tests).

use serde_json::Value;

fn bench(args: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bench")).args(args).arg("--json").output().expect("run bench");
    assert!(out.status.success(), "bench {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bench {args:?} printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn positive(v: &Value, field: &str) -> f64 {
    let x = v[field].as_f64().unwrap_or_else(|| panic!("`{field}` missing in {v}"));
    assert!(x.is_finite() && x > 0.0, "`{field}` = {x} in {v}");
    x
}

#[test]
fn every_scenario_completes_a_tiny_run_and_reports_sane_numbers() {
    for scenario in ["enqueue", "throughput", "retry"] {
        let r = bench(&["--scenario", scenario, "--tasks", "200", "--concurrency", "10"]);
        assert_eq!((r["driver"].as_str(), r["scenario"].as_str(), r["tasks"].as_u64()), (Some("sqlite"), Some(scenario), Some(200)));
        let rate = positive(&r, "tasks_per_second");
        let seconds = positive(&r, "seconds");
        assert!((rate * seconds - 200.0).abs() < 1.0, "tasks/s × seconds is the task count: {r}");
        assert!(r["server"].as_str().is_some_and(|s| s.starts_with("SQLite 3.")), "{r}");
        assert!(r["machine"]["cores"].as_u64().is_some_and(|c| c >= 1) && r["machine"]["memory_mib"].as_u64().is_some_and(|m| m > 0));
    }
    // `retry` exits non-zero unless every task failed once and then succeeded.
    positive(&bench(&["--scenario", "retry", "--tasks", "200"]), "deliveries_per_second");

    let latency = bench(&["--scenario", "latency", "--tasks", "200", "--rate", "2000"]);
    let l = &latency["latency_ms"];
    let (p50, p99, max) = (positive(l, "p50"), positive(l, "p99"), positive(l, "max"));
    assert!(p50 <= positive(l, "p95") && p50 <= p99 && p99 <= max, "percentiles in order: {l}");

    let scaling = bench(&["--scenario", "scaling", "--sizes", "100,300"]);
    let runs = scaling["runs"].as_array().expect("runs");
    assert_eq!(runs.iter().map(|r| r["tasks"].as_u64()).collect::<Vec<_>>(), [Some(100), Some(300)]);
    assert!(scaling["spread"].as_f64().is_some_and(|s| s >= 0.0), "{scaling}");

    let memory = bench(&["--scenario", "memory", "--tasks", "200", "--concurrency", "10"]);
    let rss = positive(&memory, "peak_rss_mib");
    assert!(rss < 1024.0, "a worker draining 200 no-op tasks stays well under 1 GiB: {rss} MiB");
}
