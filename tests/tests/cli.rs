//! The CLI as a library entry point: a user binary (`ledger-worker`) gets every command with
//! its `#[task]` functions linked in.

use std::time::Duration;

use assert_cmd::Command;
use asynctasq_tests::Setup;

fn worker_cmd(s: &Setup) -> Command {
    let mut cmd = Command::cargo_bin("ledger-worker").expect("binary");
    cmd.env("ASYNCTASQ_TEST_LEDGER", &s.ledger_url).env("ASYNCTASQ_LOG", "warn");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_binary_worker_runs_its_tasks_until_empty() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    s.dispatch("emails", 25, 1, Duration::from_secs(30)).await;
    let out = worker_cmd(&s)
        .arg("worker")
        .args(&s.backend_args)
        .args(["--queues", "emails", "--stop-when-empty", "--json"])
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let counts: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON counts on stdout");
    assert_eq!(counts["succeeded"], 25);
    assert_eq!(s.completions().await.len(), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tasks_flag_stops_after_exactly_that_many() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    s.dispatch("default", 30, 1, Duration::from_secs(30)).await;
    let out = worker_cmd(&s)
        .arg("worker")
        .args(&s.backend_args)
        .args(["--max-tasks", "7", "--concurrency", "5", "--json"])
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let counts: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON counts");
    assert_eq!((counts["started"].as_u64(), counts["succeeded"].as_u64()), (Some(7), Some(7)));
    assert_eq!(s.completions().await.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_time_flag_stops_an_idle_worker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    worker_cmd(&s).arg("worker").args(&s.backend_args).args(["--max-time", "300ms"]).timeout(Duration::from_secs(30)).assert().success();
}

#[test]
fn tasks_command_lists_the_linked_tasks() {
    let out = Command::cargo_bin("ledger-worker").expect("binary").arg("tasks").output().expect("run");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "fails_once\nledgered", "every linked task, sorted by name");
}
