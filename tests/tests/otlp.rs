//! `--otlp-endpoint` from outside real processes: tasks dispatched by `ledger-worker dispatch`
//! processes and run by a `worker run-once` process reach an OTLP/HTTP collector of the test's
//! own, and each run is a child of its dispatch, across the two processes.

use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asynctasq_tests::Setup;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WORKER: &str = env!("CARGO_BIN_EXE_ledger-worker");

type Bodies = Arc<Mutex<Vec<Vec<u8>>>>;

/// A collector on a free loopback port that answers every POST with 200 and keeps its body.
async fn collector() -> (u16, Bodies) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let bodies = Bodies::default();
    let kept = bodies.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve(conn, kept.clone()));
        }
    });
    (port, bodies)
}

/// Requests on one connection (the exporter keeps it alive), each read by its content length.
async fn serve(mut conn: tokio::net::TcpStream, kept: Bodies) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
        let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        while buf.len() < head_end + length {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        kept.lock().expect("bodies").push(buf[head_end..head_end + length].to_vec());
        buf.drain(..head_end + length);
        if conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n").await.is_err() {
            return;
        }
    }
}

/// Every span the collector has received.
fn spans(bodies: &Bodies) -> Vec<Span> {
    let bodies = bodies.lock().expect("bodies");
    bodies
        .iter()
        .flat_map(|b| ExportTraceServiceRequest::decode(b.as_slice()).expect("an OTLP protobuf export").resource_spans)
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect()
}

fn run(s: &Setup, args: &[&str]) -> Output {
    let mut cmd = Command::new(WORKER);
    // The exporter reads the OpenTelemetry variables (a sampler, headers, a timeout) and its
    // HTTP client the proxy ones: the machine's own must not reach the test's processes.
    for (key, _) in std::env::vars() {
        let upper = key.to_ascii_uppercase();
        if upper.starts_with("OTEL_") || upper.ends_with("_PROXY") {
            cmd.env_remove(&key);
        }
    }
    let out = cmd
        .args(args)
        .args(&s.backend_args)
        .env("ASYNCTASQ_TEST_LEDGER", &s.ledger_url)
        .env("ASYNCTASQ_LOG", "warn")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .output()
        .expect("run ledger-worker");
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_exported_over_otlp_are_children_of_their_dispatch_in_another_process() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    let (port, bodies) = collector().await;
    let endpoint = format!("http://127.0.0.1:{port}");
    let queue = "traced";
    let mut logs = Vec::new();
    for n in 0..3 {
        let args = format!(r#"{{"n": {n}, "sleep_ms": 0}}"#);
        logs.push(run(&s, &["dispatch", "ledgered", "--args", &args, "--queue", queue, "--otlp-endpoint", &endpoint]).stderr);
    }
    logs.push(run(&s, &["worker", "run-once", "--queues", queue, "--otlp-endpoint", &endpoint]).stderr);
    assert_eq!(s.completions().await.len(), 3, "the worker ran the three tasks");
    // Each process flushed its batch when it ended, before it exited: what has not arrived
    // by now was lost, and the processes' own words say why.
    let named = |name: String| spans(&bodies).into_iter().filter(|s| s.name == name).collect::<Vec<_>>();
    let arrived = || named(format!("send {queue}")).len() == 3 && named(format!("process {queue}")).len() == 3;
    if !arrived() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        arrived(),
        "the spans of both processes: got {:?}; the processes said: {:?}",
        spans(&bodies).iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        logs.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect::<Vec<_>>()
    );
    let (sends, processes) = (named(format!("send {queue}")), named(format!("process {queue}")));
    for process in &processes {
        let parent = sends
            .iter()
            .find(|s| s.span_id == process.parent_span_id)
            .unwrap_or_else(|| panic!("the run's parent is one of the send spans: {process:?}"));
        assert_eq!(parent.trace_id, process.trace_id, "the run continues its dispatch's trace");
    }
    let mut traces: Vec<_> = sends.iter().map(|s| s.trace_id.clone()).collect();
    traces.dedup();
    assert_eq!(traces.len(), 3, "three dispatch commands, three traces");
}

#[test]
fn an_endpoint_that_is_not_plain_http_is_a_usage_error() {
    let out = Command::new(WORKER).args(["--otlp-endpoint", "https://user:hunter2@collector:4318", "tasks"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--otlp-endpoint") && err.contains("no TLS"), "{err}");
    assert!(!err.contains("hunter2"), "the error never echoes the URL's password: {err}");
}
