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

/// `ledger-worker worker` on the setup's backend with `flags`; what it printed, once it
/// exited 0 (its stderr is the failure message otherwise).
fn run_worker(mut cmd: Command, s: &Setup, flags: &[&str]) -> std::process::Output {
    let out = cmd.arg("worker").args(&s.backend_args).args(flags).timeout(Duration::from_secs(60)).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_binary_worker_runs_its_tasks_until_empty() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    s.dispatch("emails", 25, 1, Duration::from_secs(30)).await;
    let out = run_worker(worker_cmd(&s), &s, &["--queues", "emails", "--stop-when-empty", "--json"]);
    let counts: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON counts on stdout");
    assert_eq!(counts["succeeded"], 25);
    assert_eq!(s.completions().await.len(), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tasks_flag_stops_after_exactly_that_many() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    s.dispatch("default", 30, 1, Duration::from_secs(30)).await;
    let out = run_worker(worker_cmd(&s), &s, &["--max-tasks", "7", "--concurrency", "5", "--json"]);
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
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "fails_once\tqueue default\nledgered\tqueue default\nsum\tqueue default",
        "every linked task, sorted by name, with its queue"
    );
    let out = Command::cargo_bin("ledger-worker").expect("binary").args(["tasks", "--json"]).output().expect("run");
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().expect("a line")).expect("JSON");
    assert_eq!((first["name"].as_str(), first["queue"].as_str()), (Some("fails_once"), Some("default")));
    assert!(first.get("result_ttl_ms").is_some_and(serde_json::Value::is_null), "null where the task sets none: {first}");
}

/// Sends SIGTERM to `pid` (a separate `kill` process, as an operator's would be).
fn term(pid: u32) {
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("run kill");
    assert!(status.success(), "kill -TERM failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_at_any_moment_of_a_workers_life_is_a_graceful_exit_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    // Early in its life: the moment its handler is in place (before that, only the default
    // action exists for any program), while it opens and migrates its database, and once it runs.
    for delay_ms in [0, 5, 25, 80, 300] {
        let mut w = s.spawn_worker(env!("CARGO_BIN_EXE_ledger-worker"), "default", 2, &[]);
        w.catches_sigterm().await;
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        w.sigterm();
        assert!(w.exited_ok().await, "SIGTERM {delay_ms} ms after its handler is in place is a graceful stop with exit 0");
    }
    // While it connects: a Redis that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("redis://127.0.0.1:{}", silent.local_addr().expect("address").port());
    let mut w: asynctasq_tests::Proc = std::process::Command::new(env!("CARGO_BIN_EXE_ledger-worker"))
        .args(["worker", "--driver", "redis", "--redis-url", &url])
        .env("ASYNCTASQ_LOG", "warn")
        .spawn()
        .expect("start a worker")
        .into();
    w.catches_sigterm().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let began = std::time::Instant::now();
    w.sigterm();
    assert!(w.exited_ok().await, "SIGTERM while connecting is a graceful stop with exit 0");
    assert!(began.elapsed() < Duration::from_secs(2), "it stops connecting at once: {:?}", began.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_repeated_within_the_same_stop_window_still_lets_running_tasks_finish() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    s.dispatch("default", 1, 1500, Duration::from_secs(30)).await;
    let mut w = s.spawn_worker(env!("CARGO_BIN_EXE_ledger-worker"), "default", 2, &["--shutdown-grace", "10s"]);
    asynctasq_tests::eventually(Duration::from_secs(30), "the task to start", || async { !s.started_runs().await.is_empty() }).await;
    // What GNU `timeout` does: the worker, then its process group, microseconds apart.
    let pid = w.child().id();
    term(pid);
    term(pid);
    assert!(w.exited_ok().await, "the worker exits 0");
    assert_eq!(s.completions().await.len(), 1, "the running task finished: the repeat was the same stop, not `stop now`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_a_failed_task_name_it_at_the_default_level_in_plain_text() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    let id = s.client.dispatch(asynctasq_tests::FailsOnce { n: 7, retry_ms: 10 }).queue("logs").await.expect("dispatch");
    let mut cmd = worker_cmd(&s);
    cmd.env_remove("ASYNCTASQ_LOG");
    let out = run_worker(cmd, &s, &["--queues", "logs", "--stop-when-empty"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let line =
        err.lines().find(|l| l.contains("retry scheduled")).unwrap_or_else(|| panic!("a retry is logged at the default level: {err}"));
    for field in [format!("task.id={id}"), "task.name=fails_once".into(), "task.queue=logs".into(), "task.attempt=1".into()] {
        assert!(line.contains(&field), "`{field}` in: {line}");
    }
    assert!(!err.contains('\u{1b}'), "no colour codes when stderr is not a terminal: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_ends_quietly_when_its_reader_closes_stdout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    s.dispatch("default", 3, 1, Duration::from_secs(30)).await;
    for args in [
        vec!["tasks"],
        vec!["queue", "status"],
        vec!["queue", "status", "--json"],
        vec!["dead", "list", "--json"],
        vec!["workers"],
        vec!["worker", "run-once", "--json"],
    ] {
        // What `cmd | head -c 10` does once head has read enough: the reader is gone.
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ledger-worker"))
            .args(&args)
            .args(&s.backend_args)
            .env("ASYNCTASQ_TEST_LEDGER", &s.ledger_url)
            .env("ASYNCTASQ_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start");
        drop(child.stdout.take());
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait")).await.expect("join");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?} ends quietly with exit 0: {err}");
    }
}
