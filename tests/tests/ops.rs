//! The operations commands (`queue`, `dead`, `dispatch`, `worker run-once`, `doctor`) through
//! a user binary (`ledger-worker`), on SQLite and on every server backend.

use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use asynctasq_tests::{
    Backend, Setup, fastrand_u32, shared_mysql_url, shared_postgres_url, shared_rabbitmq_url, shared_redis_url, shared_sqs_endpoint,
};
use serde_json::{Value, json};

/// Runs `ledger-worker <args> <backend flags>` on `s`'s backend.
fn cli(s: &Setup, args: &[&str]) -> Output {
    Command::cargo_bin("ledger-worker")
        .expect("binary")
        .args(args)
        .args(&s.backend_args)
        .envs(s.backend_env.iter().map(|(k, v)| (k, v)))
        .env("ASYNCTASQ_TEST_LEDGER", &s.ledger_url)
        .env("ASYNCTASQ_LOG", "warn")
        .timeout(Duration::from_secs(120))
        .output()
        .expect("run")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).expect("JSON on stdout")
}

/// One line on stderr naming the problem, exit 1.
fn refused(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

/// The four counts of `queue status --json` (without the oldest ready task's age and totals).
fn counts(s: &Setup, queue: &str) -> Value {
    let mut status = json_of(&cli(s, &["queue", "status", queue, "--json"]))["queues"][queue].clone();
    if let Some(fields) = status.as_object_mut() {
        fields.remove("oldest_ready_age_ms");
        fields.remove("totals");
        assert_eq!(fields.remove("paused"), Some(Value::Bool(false)), "a queue no one paused says so");
        assert_eq!(fields.remove("max_leased"), Some(Value::Null), "a queue no one limited says so");
        assert_eq!(fields.remove("per_key"), Some(Value::Null), "a queue no one limited per key says so");
        assert_eq!(fields.remove("rate"), Some(Value::Null), "a queue no one rate-limited says so");
    }
    status
}

/// Status, dead list/show/retry, flush and run-once, as an operator would chain them.
async fn operators_see_and_repair_a_queue(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), backend).await;
    let q = "ops";
    s.dispatch(q, 3, 0, Duration::from_secs(30)).await;
    // Kill one task by hand, then hand back whatever this handle fetched ahead.
    s.driver.consumer("ops-host:4242:beef");
    let d = s.driver.dequeue(q, 1).await.expect("dequeue").remove(0);
    s.driver.dead_letter(&d.lease, "boom: disk full", Duration::from_secs(3600)).await.expect("dead-letter");
    s.driver.stop_prefetch().await.expect("stop prefetch");

    assert_eq!(counts(&s, q), json!({ "ready": 2, "scheduled": 0, "leased": 0, "dead": 1 }));
    let all = json_of(&cli(&s, &["queue", "status", "--json"]));
    assert!(all["queues"][q].is_object(), "with no queue named, every known queue: {all}");
    let age = &all["queues"][q]["oldest_ready_age_ms"];
    if s.driver.supports(asynctasq_core::Capability::OldestReadyAge) {
        assert!(age.as_u64().is_some(), "the oldest ready task's age, in ms: {all}");
    } else {
        assert!(age.is_null(), "absent where the backend cannot tell: {all}");
    }
    assert!(ok(&cli(&s, &["queue", "status", q])).contains("READY"), "a table without --json");

    let dead = json_of(&cli(&s, &["dead", "list", q, "--json"]));
    let entry = &dead["dead"][0];
    assert_eq!(dead["dead"].as_array().map(Vec::len), Some(1), "{dead}");
    assert_eq!(
        (entry["id"].as_str(), &entry["task"], &entry["error"], &entry["attempt"]),
        (Some(d.lease.id.to_string().as_str()), &json!("ledgered"), &json!("boom: disk full"), &json!(1))
    );
    let shown = json_of(&cli(&s, &["dead", "show", &d.lease.id.to_string(), "--json"]));
    assert_eq!(shown["args"]["sleep_ms"], 0, "arguments decoded as JSON: {shown}");
    assert_eq!(shown["decode_error"], Value::Null);
    if s.driver.supports(asynctasq_core::Capability::ErrorHistory) {
        let history = &shown["errors"];
        assert_eq!((&history[0]["attempt"], &history[0]["error"]), (&json!(1), &json!("boom: disk full")), "its error history: {shown}");
        assert_eq!(history[0]["worker"], "ops-host:4242:beef", "naming the worker whose run failed: {shown}");
        let text = ok(&cli(&s, &["dead", "show", &d.lease.id.to_string()]));
        assert!(text.contains("errors:\n  attempt 1 (") && text.contains("on ops-host:4242:beef): boom"), "one line an attempt: {text}");
    }

    let id = d.lease.id.to_string();
    let lookup = s.driver.supports(asynctasq_core::Capability::TaskLookup);
    let show = |s: &Setup| cli(s, &["task", "show", &id, "--json"]);
    if lookup {
        let t = json_of(&show(&s));
        assert_eq!(
            (&t["state"], &t["queue"], &t["task"], &t["attempt"]),
            (&json!("dead"), &json!(q), &json!("ledgered"), &json!(1)),
            "{t}"
        );
        assert_eq!((&t["last_error"], &t["args"]["sleep_ms"]), (&json!("boom: disk full"), &json!(0)), "{t}");
        let text = ok(&cli(&s, &["task", "show", &id]));
        assert!(text.contains("state:     dead") && text.contains("error:     boom: disk full"), "{text}");
        assert!(t["started_at"].as_u64().is_some() && text.contains("started:   "), "when its last run started: {t}");
        let err = refused(&cli(&s, &["task", "show", "01a20701-e1fa-750a-82c3-ac4b66434fd2"]));
        assert!(err.contains("no task 01a20701-e1fa-750a-82c3-ac4b66434fd2"), "{err}");
    } else {
        assert!(refused(&show(&s)).contains("cannot look a task up by id"), "said plainly where the backend cannot");
    }

    assert!(ok(&cli(&s, &["dead", "retry", q, "--id", &id])).contains("retried 1"));
    assert_eq!(counts(&s, q), json!({ "ready": 3, "scheduled": 0, "leased": 0, "dead": 0 }));
    if lookup {
        let t = json_of(&show(&s));
        assert_eq!((&t["state"], &t["attempt"]), (&json!("ready"), &json!(0)), "back to ready, attempts reset: {t}");
    }

    let err = refused(&cli(&s, &["queue", "flush", q]));
    assert!(err.contains("--yes") && err.contains("delete 3"), "{err}");
    assert_eq!(counts(&s, q)["ready"], 3, "nothing deleted without confirmation");

    let summary = json_of(&cli(&s, &["worker", "run-once", "--queues", q, "--json"]));
    assert_eq!(summary["succeeded"], 3, "{summary}");
    assert_eq!(s.completions().await.len(), 3);
    assert_eq!(counts(&s, q), json!({ "ready": 0, "scheduled": 0, "leased": 0, "dead": 0 }));

    // The worker process is gone; what it settled is still counted, by the backend.
    let status = json_of(&cli(&s, &["queue", "status", q, "--json"]));
    let table = ok(&cli(&s, &["queue", "status", q]));
    if s.driver.supports(asynctasq_core::Capability::Totals) {
        assert_eq!(status["queues"][q]["totals"], json!({ "succeeded": 3, "failed": 1 }), "{status}");
        let row = table.lines().find(|l| l.contains(q)).unwrap_or_default().to_owned();
        assert!(table.contains("SUCCEEDED") && row.trim_end_matches(['│', '|', ' ']).ends_with('1'), "{table}");
    } else {
        assert!(status["queues"][q]["totals"].is_null(), "absent where the backend keeps none: {status}");
        assert!(table.contains("keeps nothing of a task once it is settled"), "{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_and_repair_a_queue_on_sqlite() {
    operators_see_and_repair_a_queue(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_and_repair_a_queue_on_redis() {
    operators_see_and_repair_a_queue(Backend::Redis(shared_redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_and_repair_a_queue_on_postgres() {
    operators_see_and_repair_a_queue(Backend::Postgres(shared_postgres_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_and_repair_a_queue_on_mysql() {
    operators_see_and_repair_a_queue(Backend::MySql(shared_mysql_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_and_repair_a_queue_on_rabbitmq() {
    operators_see_and_repair_a_queue(Backend::RabbitMq(shared_rabbitmq_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_and_repair_a_queue_on_sqs() {
    operators_see_and_repair_a_queue(Backend::Sqs(shared_sqs_endpoint())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_with_yes_deletes_waiting_and_dead_tasks_but_never_leased_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    s.dispatch("f", 4, 0, Duration::from_secs(300)).await;
    let mut got = s.driver.dequeue("f", 2).await.expect("dequeue");
    s.driver.dead_letter(&got.remove(1).lease, "x", Duration::from_secs(3600)).await.expect("dead");
    assert!(ok(&cli(&s, &["queue", "flush", "f", "--status", "dead", "--yes"])).contains("deleted 1"));
    assert!(ok(&cli(&s, &["queue", "flush", "f", "--status", "all", "--yes"])).contains("deleted 2"));
    assert_eq!(counts(&s, "f"), json!({ "ready": 0, "scheduled": 0, "leased": 1, "dead": 0 }));
    assert!(s.driver.ack(&[got.remove(0).lease.into()]).await.expect("ack").is_empty(), "the leased task still acks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_checks_arguments_against_the_task_before_enqueueing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    let out =
        json_of(&cli(&s, &["dispatch", "ledgered", "--args", r#"{"n": 7, "sleep_ms": 0}"#, "--queue", "shell", "--delay", "1h", "--json"]));
    assert_eq!(out["queue"], "shell");
    let st = s.driver.stats("shell").await.expect("stats");
    assert_eq!((st.ready, st.scheduled), (0, 1), "delayed by an hour");
    let at = json_of(&cli(
        &s,
        &["dispatch", "ledgered", "--args", r#"{"n": 8, "sleep_ms": 0}"#, "--queue", "at", "--at", "2999-12-24T18:00:00Z", "--json"],
    ));
    let id: asynctasq_core::TaskId = at["id"].as_str().expect("an id").parse().expect("a task id");
    let due = s.driver.find(id).await.expect("find").expect("stored");
    assert_eq!((due.state, due.at), (asynctasq_core::driver::TaskState::Scheduled, 32_503_053_600_000), "due at the time given");
    let past = json_of(&cli(
        &s,
        &["dispatch", "ledgered", "--args", r#"{"n": 9, "sleep_ms": 0}"#, "--queue", "at", "--at", "2020-01-01T00:00:00Z", "--json"],
    ));
    let st = s.driver.stats("at").await.expect("stats");
    assert_eq!((st.ready, st.scheduled), (1, 1), "a time past is due at once: {past}");
    let bad = cli(&s, &["dispatch", "ledgered", "--args", r#"{"n": 1, "sleep_ms": 0}"#, "--at", "tomorrow"]);
    assert_eq!(bad.status.code(), Some(2), "a bad --at is a usage error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--at"), "naming the flag");
    let both = cli(&s, &["dispatch", "ledgered", "--args", r#"{"n": 1, "sleep_ms": 0}"#, "--at", "2999-12-24T18:00:00Z", "--delay", "1h"]);
    assert_eq!(both.status.code(), Some(2), "--at and --delay exclude each other");

    let err = refused(&cli(&s, &["dispatch", "ledgered", "--args", r#"{"n": "seven"}"#]));
    assert!(err.contains("invalid --args for task `ledgered`") && err.contains("expected u64"), "{err}");
    let err = refused(&cli(&s, &["dispatch", "ledgered", "--args", "{not json"]));
    assert!(err.contains("invalid --args"), "{err}");
    let err = refused(&cli(&s, &["dispatch", "nosuch"]));
    assert!(err.contains("unknown task `nosuch`") && err.contains("ledgered"), "{err}");
    assert_eq!(s.driver.queues().await.expect("queues"), vec!["at".to_owned(), "shell".to_owned()], "nothing else was enqueued");
}

/// `task show` and `task wait` follow a task to its result, as a script would.
async fn a_finished_task_shows_its_result_and_task_wait_reports_it(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), backend).await;
    let q = "follow";
    let sent = json_of(&cli(&s, &["dispatch", "sum", "--args", r#"{"a": 2, "b": 40}"#, "--queue", q, "--json"]));
    let id = sent["id"].as_str().expect("an id").to_owned();
    if !s.driver.supports(asynctasq_core::Capability::Results) {
        let err = refused(&cli(&s, &["task", "wait", &id, "--timeout", "1s"]));
        assert!(err.contains("keeps no record of settled tasks"), "refused, saying why: {err}");
        return;
    }
    let out = cli(&s, &["task", "wait", &id, "--timeout", "300ms", "--json"]);
    assert_eq!(out.status.code(), Some(1), "not settled yet: exit 1");
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).expect("JSON")["outcome"], "timed_out");

    assert_eq!(json_of(&cli(&s, &["worker", "run-once", "--queues", q, "--json"]))["succeeded"], 1);
    let t = json_of(&cli(&s, &["task", "show", &id, "--json"]));
    assert_eq!((&t["state"], &t["task"], &t["attempt"], &t["result"]), (&json!("succeeded"), &json!("sum"), &json!(1), &json!(42)), "{t}");
    assert_eq!(t["args"], json!({ "a": 2, "b": 40 }), "the arguments it ran with: {t}");
    let text = ok(&cli(&s, &["task", "show", &id]));
    assert!(text.contains("state:     succeeded") && text.contains("result:    42"), "{text}");
    let waited = json_of(&cli(&s, &["task", "wait", &id, "--json"]));
    assert_eq!(waited, json!({ "id": id, "outcome": "succeeded", "result": 42, "error": null }));
    assert_eq!(ok(&cli(&s, &["task", "wait", &id])).trim(), "succeeded: 42");
    let gone = cli(&s, &["task", "wait", "01a20701-e1fa-750a-82c3-ac4b66434fd2", "--json"]);
    assert_eq!(gone.status.code(), Some(1));
    assert_eq!(serde_json::from_slice::<Value>(&gone.stdout).expect("JSON")["outcome"], "expired", "an id not stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_task_shows_its_result_and_task_wait_reports_it_on_sqlite() {
    a_finished_task_shows_its_result_and_task_wait_reports_it(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_task_shows_its_result_and_task_wait_reports_it_on_redis() {
    a_finished_task_shows_its_result_and_task_wait_reports_it(Backend::Redis(shared_redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_task_shows_its_result_and_task_wait_reports_it_on_postgres() {
    a_finished_task_shows_its_result_and_task_wait_reports_it(Backend::Postgres(shared_postgres_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_task_shows_its_result_and_task_wait_reports_it_on_mysql() {
    a_finished_task_shows_its_result_and_task_wait_reports_it(Backend::MySql(shared_mysql_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_wait_is_refused_where_the_backend_keeps_no_results() {
    a_finished_task_shows_its_result_and_task_wait_reports_it(Backend::RabbitMq(shared_rabbitmq_url())).await;
}

/// `task cancel` removes a waiting task for good, says so, and says when there was nothing left
/// to cancel; `task show` and `task wait` report the task cancelled.
async fn task_cancel_removes_a_waiting_task_and_reports_each_outcome(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), backend).await;
    let q = "cancel";
    let sent = json_of(&cli(&s, &["dispatch", "sum", "--args", r#"{"a": 1, "b": 1}"#, "--queue", q, "--json"]));
    let id = sent["id"].as_str().expect("an id").to_owned();
    if !s.driver.supports(asynctasq_core::Capability::Cancel) {
        let err = refused(&cli(&s, &["task", "cancel", &id]));
        assert!(err.contains("cannot reach a task once it is handed out"), "refused, saying why: {err}");
        return;
    }
    assert_eq!(json_of(&cli(&s, &["task", "cancel", &id, "--json"])), json!({ "id": id, "outcome": "removed" }));
    assert_eq!(json_of(&cli(&s, &["worker", "run-once", "--queues", q, "--json"]))["started"], 0, "nothing left to run");
    let t = json_of(&cli(&s, &["task", "show", &id, "--json"]));
    assert_eq!((&t["state"], &t["task"], &t["attempt"]), (&json!("cancelled"), &json!("sum"), &json!(0)), "{t}");
    let waited = cli(&s, &["task", "wait", &id, "--json"]);
    assert_eq!(waited.status.code(), Some(1), "a cancelled task did not succeed");
    assert_eq!(serde_json::from_slice::<Value>(&waited.stdout).expect("JSON")["outcome"], "cancelled");
    let again = cli(&s, &["task", "cancel", &id]);
    assert_eq!(again.status.code(), Some(1), "nothing changed: exit 1");
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("already finished:"), "{again:?}");
    let unknown = cli(&s, &["task", "cancel", "01a20701-e1fa-750a-82c3-ac4b66434fd2", "--json"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(serde_json::from_slice::<Value>(&unknown.stdout).expect("JSON")["outcome"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_cancel_removes_a_waiting_task_and_reports_each_outcome_on_sqlite() {
    task_cancel_removes_a_waiting_task_and_reports_each_outcome(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_cancel_removes_a_waiting_task_and_reports_each_outcome_on_redis() {
    task_cancel_removes_a_waiting_task_and_reports_each_outcome(Backend::Redis(shared_redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_cancel_removes_a_waiting_task_and_reports_each_outcome_on_postgres() {
    task_cancel_removes_a_waiting_task_and_reports_each_outcome(Backend::Postgres(shared_postgres_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_cancel_removes_a_waiting_task_and_reports_each_outcome_on_mysql() {
    task_cancel_removes_a_waiting_task_and_reports_each_outcome(Backend::MySql(shared_mysql_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_cancel_is_refused_where_the_backend_cannot_cancel() {
    task_cancel_removes_a_waiting_task_and_reports_each_outcome(Backend::RabbitMq(shared_rabbitmq_url())).await;
}

/// `task list` pages through a queue's tasks in one state, and `task delete` removes one.
async fn task_list_pages_and_task_delete_removes(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), backend).await;
    let q = "browse";
    let mut ids = Vec::new();
    for n in 0..3 {
        let sent = json_of(&cli(&s, &["dispatch", "sum", "--args", &format!(r#"{{"a": {n}, "b": 1}}"#), "--queue", q, "--json"]));
        ids.push(sent["id"].as_str().expect("an id").to_owned());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if !s.driver.supports(asynctasq_core::Capability::Browse) {
        assert!(refused(&cli(&s, &["task", "list", q])).contains("cannot list its tasks"));
        assert!(refused(&cli(&s, &["task", "delete", &ids[0]])).contains("cannot delete a task"));
        return;
    }
    let listed = |args: &[&str]| -> Vec<String> {
        let page = json_of(&cli(&s, &[&["task", "list", q, "--json"], args].concat()));
        page["tasks"].as_array().expect("tasks").iter().map(|t| t["id"].as_str().expect("id").to_owned()).collect()
    };
    assert_eq!(listed(&[]), ids, "ready, in the order they fell due");
    assert_eq!(listed(&["--offset", "1", "--limit", "1"]), vec![ids[1].clone()], "one page");
    assert!(listed(&["--state", "dead"]).is_empty());
    assert!(ok(&cli(&s, &["task", "list", q])).contains(&ids[2]), "a table without --json");
    assert_eq!(json_of(&cli(&s, &["task", "delete", &ids[1], "--json"])), json!({ "id": ids[1], "outcome": "deleted" }));
    assert_eq!(listed(&[]), vec![ids[0].clone(), ids[2].clone()], "gone from the list");
    let again = cli(&s, &["task", "delete", &ids[1]]);
    assert_eq!(again.status.code(), Some(1), "nothing to delete: exit 1");
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("not found:"), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_list_pages_and_task_delete_removes_on_sqlite() {
    task_list_pages_and_task_delete_removes(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_list_pages_and_task_delete_removes_on_redis() {
    task_list_pages_and_task_delete_removes(Backend::Redis(shared_redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_list_pages_and_task_delete_removes_on_postgres() {
    task_list_pages_and_task_delete_removes(Backend::Postgres(shared_postgres_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_list_pages_and_task_delete_removes_on_mysql() {
    task_list_pages_and_task_delete_removes(Backend::MySql(shared_mysql_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_list_and_delete_are_refused_where_the_backend_cannot_browse() {
    task_list_pages_and_task_delete_removes(Backend::RabbitMq(shared_rabbitmq_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_with_an_id_already_stored_dispatches_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    let id = "01a20701-e1fa-750a-82c3-ac4b66434fd2";
    let args = ["dispatch", "ledgered", "--args", r#"{"n": 1, "sleep_ms": 0}"#, "--queue", "once", "--id", id];
    let first = json_of(&cli(&s, &[&args[..], &["--json"]].concat()));
    assert_eq!(first, json!({ "id": id, "queue": "once", "outcome": "new" }));
    let again = ok(&cli(&s, &args));
    assert_eq!(again.trim(), format!("task {id} already exists; nothing dispatched"));
    assert_eq!(s.driver.stats("once").await.expect("stats").ready, 1, "one task for the id");
    let out = cli(&s, &["dispatch", "ledgered", "--id", "not-a-uuid"]);
    assert_eq!(out.status.code(), Some(2), "a malformed id is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("`not-a-uuid` is not a task id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queue_names_and_ids_are_named_and_exit_non_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    let out = cli(&s, &["queue", "status", "bad name"]);
    assert_eq!(out.status.code(), Some(2), "a bad queue name is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid queue name `bad name`"));
    assert!(refused(&cli(&s, &["dead", "show", "not-a-uuid"])).contains("not a task id"));
    assert!(refused(&cli(&s, &["dead", "show", "01a20701-e1fa-750a-82c3-ac4b66434fd2"])).contains("no dead task"));
    let out = cli(&s, &["dead", "retry", "q"]);
    assert_eq!(out.status.code(), Some(2), "neither --id nor --all is a usage error");
    let out = cli(&s, &["task", "show", "not-a-uuid"]);
    assert_eq!(out.status.code(), Some(2), "a malformed task id is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("`not-a-uuid` is not a task id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_a_healthy_backend_and_exits_3_on_an_unreachable_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    let report = ok(&cli(&s, &["doctor"]));
    assert!(
        report.contains("ok    connect: sqlite") && report.contains("round trip") && report.contains("tasks: 3 registered"),
        "{report}"
    );
    let out = Command::cargo_bin("ledger-worker")
        .expect("binary")
        .args(["doctor", "--driver", "redis", "--redis-url", "redis://:hunter2@127.0.0.1:1"])
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("FAIL  connect"), "{all}");
    assert!(!all.contains("hunter2"), "password leaked: {all}");
}

/// A running worker process is listed with its pid and queues and, from its next heartbeat,
/// what it runs (task id, age, not stuck); gone once it stops.
async fn workers_lists_a_running_worker_until_it_stops(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), backend).await;
    s.dispatch("reg-high", 1, 60_000, Duration::from_secs(30)).await;
    // The long task is released at the stop, after a short grace.
    let mut worker = s.spawn_worker(env!("CARGO_BIN_EXE_ledger-worker"), "reg-high,reg-low", 3, &["--shutdown-grace", "1s"]);
    let pid = worker.child().id();
    let mut listed = Value::Null;
    for _ in 0..200 {
        let all = json_of(&cli(&s, &["workers", "--json"]));
        if let Some(w) = all["workers"].as_array().and_then(|ws| ws.iter().find(|w| w["pid"] == pid)) {
            listed = w.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (&listed["queues"], &listed["concurrency"], &listed["stale"]),
        (&json!(["reg-high", "reg-low"]), &json!(3), &json!(false)),
        "{listed}"
    );
    assert!(ok(&cli(&s, &["workers"])).contains(&pid.to_string()), "the table shows it too");
    let mut runs = Value::Null;
    for _ in 0..300 {
        let all = json_of(&cli(&s, &["workers", "--json"]));
        let w = all["workers"].as_array().and_then(|ws| ws.iter().find(|w| w["pid"] == pid)).cloned().unwrap_or_default();
        if w["running"].as_array().is_some_and(|r| !r.is_empty()) {
            runs = w["running"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((&runs[0]["task"], &runs[0]["queue"], &runs[0]["stuck"]), (&json!("ledgered"), &json!("reg-high"), &json!(false)), "{runs}");
    let id = runs[0]["id"].as_str().expect("an id").to_owned();
    let table = ok(&cli(&s, &["workers"]));
    assert!(table.contains(&id) && table.contains("RUNNING FOR"), "the table lists what it runs: {table}");
    assert_eq!(json_of(&cli(&s, &["task", "show", &id, "--json"]))["stuck"], json!(false), "a run of seconds is not stuck");
    worker.sigterm();
    assert!(worker.exited_ok().await);
    let all = json_of(&cli(&s, &["workers", "--json"]));
    assert!(!all["workers"].as_array().expect("list").iter().any(|w| w["pid"] == pid), "a stopped worker removes itself: {all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_lists_a_running_worker_until_it_stops_on_sqlite() {
    workers_lists_a_running_worker_until_it_stops(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_lists_a_running_worker_until_it_stops_on_redis() {
    workers_lists_a_running_worker_until_it_stops(Backend::Redis(shared_redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_lists_a_running_worker_until_it_stops_on_postgres() {
    workers_lists_a_running_worker_until_it_stops(Backend::Postgres(shared_postgres_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_lists_a_running_worker_until_it_stops_on_mysql() {
    workers_lists_a_running_worker_until_it_stops(Backend::MySql(shared_mysql_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_says_plainly_that_rabbitmq_keeps_no_registry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), Backend::RabbitMq(shared_rabbitmq_url())).await;
    let err = refused(&cli(&s, &["workers"]));
    assert!(err.contains("rabbitmq backend keeps no worker registry"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_prints_again_until_interrupted() {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    s.dispatch("watched", 2, 0, Duration::from_secs(30)).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ledger-worker"))
        .args(["queue", "status", "watched", "--json", "--watch", "0.2"])
        .args(&s.backend_args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(child.try_wait().expect("poll").is_none(), "still watching");
    child.kill().expect("kill");
    let mut out = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut out).expect("read");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("one JSON document per line")).collect();
    assert!(lines.len() >= 3, "printed every 0.2 s: {out}");
    assert!(lines.iter().all(|v| v["queues"]["watched"]["ready"] == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_by_status_deletes_ready_or_scheduled_alone_where_the_backend_can() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    s.dispatch("split", 2, 0, Duration::from_secs(30)).await;
    assert!(
        ok(&cli(&s, &["dispatch", "ledgered", "--args", r#"{"n": 9, "sleep_ms": 0}"#, "--queue", "split", "--delay", "1h"]))
            .contains("dispatched")
    );
    assert!(ok(&cli(&s, &["queue", "flush", "split", "--status", "scheduled", "--yes"])).contains("deleted 1"));
    assert_eq!(counts(&s, "split"), json!({ "ready": 2, "scheduled": 0, "leased": 0, "dead": 0 }));
    assert!(ok(&cli(&s, &["queue", "flush", "split", "--status", "ready", "--yes"])).contains("deleted 2"));
    assert_eq!(counts(&s, "split")["ready"], 0);

    // Redis deletes waiting tasks in one script and cannot split them: it says so.
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), Backend::Redis(shared_redis_url())).await;
    s.dispatch("split", 2, 0, Duration::from_secs(30)).await;
    let err = refused(&cli(&s, &["queue", "flush", "split", "--status", "ready", "--yes"]));
    assert!(err.contains("the redis backend cannot do this") && err.contains("--status pending"), "{err}");
    assert_eq!(counts(&s, "split")["ready"], 2, "nothing deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colours_appear_only_when_asked_for_and_never_with_no_color() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::cargo_bin("ledger-worker").expect("binary");
        cmd.arg("doctor").args(&s.backend_args).env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        ok(&cmd.output().expect("run"))
    };
    assert!(!run(&[]).contains('\u{1b}'), "piped output is plain");
    assert!(run(&[("CLICOLOR_FORCE", "1")]).contains("\u{1b}["), "forced colour colours the verdicts");
    assert!(!run(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]).contains('\u{1b}'), "NO_COLOR wins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_from_a_file_checks_every_line_before_enqueueing_any() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    let good = dir.path().join("good.jsonl");
    let lines: Vec<String> = (0..2500).map(|n| format!(r#"{{"n": {n}, "sleep_ms": 0}}"#)).collect();
    std::fs::write(&good, lines.join("\n") + "\n\n").expect("write");
    let out = json_of(&cli(&s, &["dispatch", "ledgered", "--args-file", good.to_str().expect("utf-8"), "--queue", "bulk", "--json"]));
    assert_eq!(out, json!({ "dispatched": 2500, "skipped": 0, "queue": "bulk" }));
    assert_eq!(s.driver.stats("bulk").await.expect("stats").ready, 2500, "every line, blank lines skipped");

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"n\": 1, \"sleep_ms\": 0}\n{\"n\": 2, \"sleep_ms\": 0}\n{\"n\": \"three\"}\n").expect("write");
    let err = refused(&cli(&s, &["dispatch", "ledgered", "--args-file", bad.to_str().expect("utf-8"), "--queue", "bulk2"]));
    assert!(err.contains("line 3") && err.contains("ledgered"), "{err}");
    assert_eq!(s.driver.stats("bulk2").await.expect("stats").ready, 0, "nothing enqueued when a line is bad");
    let out = cli(&s, &["dispatch", "ledgered", "--args", "{}", "--args-file", "x"]);
    assert_eq!(out.status.code(), Some(2), "--args and --args-file together is a usage error");
}

/// `migrate --dry-run` lists what would run and changes nothing; `migrate` applies it;
/// `doctor` fails on a stale schema and passes once migrated.
/// `last` is the backend's newest migration: its number and name.
async fn migrate_dry_run_changes_nothing_and_doctor_names_pending_migrations(backend_args: Vec<String>, last: (u32, &str)) {
    let (count, name) = last;
    let run = |args: &[&str]| {
        Command::cargo_bin("ledger-worker")
            .expect("binary")
            .args(args)
            .args(&backend_args)
            .timeout(Duration::from_secs(60))
            .output()
            .expect("run")
    };
    let text = |out: &Output| String::from_utf8_lossy(&out.stdout).into_owned();
    let dry = run(&["migrate", "--dry-run"]);
    let listed = ok(&dry);
    assert!(listed.contains("would apply 0001") && listed.contains(&format!("would apply {count:04} {name}")), "{listed}");
    assert!(ok(&run(&["migrate", "--dry-run"])).contains("would apply 0001"), "the dry run applied nothing");
    let sick = run(&["doctor"]);
    assert_eq!(sick.status.code(), Some(3), "{}", text(&sick));
    // The hint names the binary that runs (a user's own, here `ledger-worker`) and its flags.
    let pending = format!("FAIL  migrations: {count} pending");
    assert!(text(&sick).contains(&pending) && text(&sick).contains("`ledger-worker migrate"), "{}", text(&sick));
    let applied = ok(&run(&["migrate"]));
    assert!(
        applied.contains(&format!("applying {count:04} {name}"))
            && applied.contains(&format!("schema is up to date ({count} migrations applied)")),
        "{applied}"
    );
    assert!(ok(&run(&["migrate", "--dry-run"])).contains("schema is up to date"));
    let report = ok(&run(&["doctor"]));
    assert!(report.contains(&format!("ok    migrations: all {count} applied")) && report.contains("ok    server: "), "{report}");
}

/// Tables of a test's own (`asynctasq_test_*`, dropped by `scripts/test`).
fn fresh_table_prefix() -> String {
    format!("asynctasq_test_{:08x}", fastrand_u32())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_dry_run_changes_nothing_and_doctor_names_pending_migrations_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("fresh.db").display());
    migrate_dry_run_changes_nothing_and_doctor_names_pending_migrations(vec!["--database-url".into(), url], (17, "queue rates")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_dry_run_changes_nothing_and_doctor_names_pending_migrations_on_postgres() {
    let args = ["--driver", "postgres", "--database-url", &shared_postgres_url(), "--table-prefix", &fresh_table_prefix()];
    migrate_dry_run_changes_nothing_and_doctor_names_pending_migrations(args.map(String::from).to_vec(), (16, "queue rates")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_dry_run_changes_nothing_and_doctor_names_pending_migrations_on_mysql() {
    let args = ["--driver", "mysql", "--database-url", &shared_mysql_url(), "--table-prefix", &fresh_table_prefix()];
    migrate_dry_run_changes_nothing_and_doctor_names_pending_migrations(args.map(String::from).to_vec(), (16, "caps per key and rates"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_server_version_and_clock_skew_on_redis() {
    let out = Command::cargo_bin("ledger-worker")
        .expect("binary")
        .args([
            "doctor",
            "--driver",
            "redis",
            "--redis-url",
            &shared_redis_url(),
            "--redis-prefix",
            &format!("asynctasq-test-{:08x}:", fastrand_u32()),
        ])
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run");
    let report = ok(&out);
    assert!(report.contains("ok    server: Redis ") || report.contains("ok    server: Valkey "), "{report}");
    assert!(report.contains("clock: the server's is") && report.contains("queues: 0 known"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_say_what_to_do_next() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::new(dir.path()).await;
    let err = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();
    // A task with arguments dispatched without any.
    let out = cli(&s, &["dispatch", "ledgered"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(err(&out).contains("--args") && err(&out).contains("--args-file"), "{}", err(&out));
    // Retry without saying which.
    let out = cli(&s, &["dead", "retry", "q"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(err(&out).contains("--id") && err(&out).contains("--all"), "{}", err(&out));
    // Purging an empty dead store.
    assert_eq!(ok(&cli(&s, &["dead", "purge", "--yes"])).trim(), "no dead tasks");
    // A run-once summary without --json.
    s.dispatch("default", 2, 1, Duration::from_secs(30)).await;
    let summary = ok(&cli(&s, &["worker", "run-once"]));
    assert!(summary.contains("2 succeeded"), "{summary}");
    // The hint names this binary and the flags it was given.
    let fresh = format!("sqlite://{}/fresh.db", dir.path().display());
    let out = Command::cargo_bin("ledger-worker")
        .expect("binary")
        .args(["migrate", "--dry-run", "--database-url", &fresh])
        .output()
        .expect("run");
    let text = ok(&out);
    assert!(text.contains(&format!("run `ledger-worker migrate --database-url {fresh}`")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_url_picks_the_backend_and_carries_its_options() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), Backend::Postgres(shared_postgres_url())).await;
    s.dispatch("via-url", 3, 1, Duration::from_secs(30)).await;
    // The same tables, named by one URL instead of three flags.
    let prefix = s.backend_args.iter().skip_while(|a| *a != "--table-prefix").nth(1).expect("the setup's prefix").clone();
    let url = format!("{}?table_prefix={prefix}", shared_postgres_url());
    let out = Command::cargo_bin("ledger-worker")
        .expect("binary")
        .args(["queue", "status", "via-url", "--json", "--url", &url])
        .output()
        .expect("run");
    assert_eq!(json_of(&out)["queues"]["via-url"]["ready"], 3, "the URL's scheme picked PostgreSQL and its query the tables");
    // A URL given with --driver is used, not ignored.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    let out = Command::cargo_bin("ledger-worker")
        .expect("binary")
        .args(["queue", "status", "--driver", "redis", "--database-url", &format!("redis://127.0.0.1:{closed}")])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{closed}")), "the Redis at the given port was tried: {err}");
}

/// `queue pause` stops every worker claiming from a queue, `queue status` says so, and
/// `queue resume` lets them take it again; a backend that cannot pause refuses, saying so.
async fn a_paused_queue_is_not_worked_until_it_is_resumed(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), backend).await;
    let q = "pausable";
    if !s.driver.supports(asynctasq_core::Capability::PauseQueues) {
        let err = refused(&cli(&s, &["queue", "pause", q]));
        assert!(err.contains("cannot pause a queue"), "refused, saying why: {err}");
        return;
    }
    s.dispatch(q, 3, 0, Duration::from_secs(30)).await;
    assert!(ok(&cli(&s, &["queue", "pause", q])).contains("paused queue `pausable`"));
    let status = json_of(&cli(&s, &["queue", "status", q, "--json"]));
    assert_eq!(status["queues"][q]["paused"], true, "{status}");
    assert!(ok(&cli(&s, &["queue", "status", q])).contains("pausable (paused)"), "the table marks it");
    let idle = json_of(&cli(&s, &["worker", "run-once", "--queues", q, "--json"]));
    assert_eq!(idle["started"], 0, "a worker of another process takes nothing from it: {idle}");
    assert!(ok(&cli(&s, &["queue", "resume", q])).contains("resumed queue `pausable`"));
    assert_eq!(json_of(&cli(&s, &["queue", "status", q, "--json"]))["queues"][q]["paused"], false);
    let ran = json_of(&cli(&s, &["worker", "run-once", "--queues", q, "--json"]));
    assert_eq!(ran["succeeded"], 3, "once resumed, everything runs: {ran}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_is_not_worked_until_it_is_resumed_on_sqlite() {
    a_paused_queue_is_not_worked_until_it_is_resumed(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_is_not_worked_until_it_is_resumed_on_postgres() {
    a_paused_queue_is_not_worked_until_it_is_resumed(Backend::Postgres(shared_postgres_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_is_not_worked_until_it_is_resumed_on_redis() {
    a_paused_queue_is_not_worked_until_it_is_resumed(Backend::Redis(shared_redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_is_refused_on_a_backend_that_cannot_pause() {
    a_paused_queue_is_not_worked_until_it_is_resumed(Backend::RabbitMq(shared_rabbitmq_url())).await;
}

/// Four keyed tasks over two keys, `queue limit --per-key 1` (shown as JSON, and in `queue
/// status` as `marked`), then a worker of another process runs all four.
fn one_per_key_runs_everything(s: &Setup, q: &str, marked: &str) {
    for n in 0..4 {
        let args = format!(r#"{{"n": {n}, "sleep_ms": 0}}"#);
        ok(&cli(s, &["dispatch", "ledgered", "--args", &args, "--queue", q, "--key", if n % 2 == 0 { "even" } else { "odd" }]));
    }
    assert_eq!(
        json_of(&cli(s, &["queue", "limit", q, "--per-key", "1", "--json"])),
        serde_json::json!({"queue": q, "max_leased": null, "per_key": 1, "rate": null})
    );
    assert!(ok(&cli(s, &["queue", "status", q])).contains(marked), "the table marks it");
    let ran = json_of(&cli(s, &["worker", "run-once", "--queues", q, "--concurrency", "4", "--json"]));
    assert_eq!(ran["succeeded"], 4, "one per key at a time, everything runs: {ran}");
}

/// `queue limit --max-leased` is obeyed by a worker of another process (0 holds everything
/// back; 2 lets it all run, two at a time), `queue status` shows it, `--clear` removes it; so
/// are `--per-key` and `--rate` (a worker of another process takes two windows for twice the
/// rate); a backend that cannot enforce a limit refuses, saying so; `--clear` with a cap, a
/// rate that is not N/DURATION and `--rate-per-key` without a rate are usage errors.
async fn a_limited_queue_is_worked_within_its_limit(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), backend).await;
    let q = "limited";
    if !s.driver.supports(asynctasq_core::Capability::QueueLimits) {
        let err = refused(&cli(&s, &["queue", "limit", q, "--max-leased", "2"]));
        assert!(err.contains("cannot limit a queue"), "refused, saying why: {err}");
        return;
    }
    let both = cli(&s, &["queue", "limit", q, "--max-leased", "2", "--clear"]);
    assert_eq!(both.status.code(), Some(2), "--clear and --max-leased exclude each other");
    s.dispatch(q, 4, 0, Duration::from_secs(30)).await;
    assert_eq!(
        json_of(&cli(&s, &["queue", "limit", q, "--max-leased", "0", "--json"])),
        serde_json::json!({"queue": q, "max_leased": 0, "per_key": null, "rate": null})
    );
    let idle = json_of(&cli(&s, &["worker", "run-once", "--queues", q, "--json"]));
    assert_eq!(idle["started"], 0, "a cap of 0 holds every task back from a worker of another process: {idle}");
    assert!(ok(&cli(&s, &["queue", "limit", q, "--max-leased", "2"])).contains("at most 2 leased at once"));
    assert!(ok(&cli(&s, &["queue", "limit", q])).contains("at most 2 leased at once"), "shown without an option");
    assert_eq!(json_of(&cli(&s, &["queue", "status", q, "--json"]))["queues"][q]["max_leased"], 2);
    assert!(ok(&cli(&s, &["queue", "status", q])).contains("limited (at most 2 leased)"), "the table marks it");
    let ran = json_of(&cli(&s, &["worker", "run-once", "--queues", q, "--concurrency", "4", "--json"]));
    assert_eq!(ran["succeeded"], 4, "within the cap, everything runs: {ran}");
    // Per key: tasks dispatched with a key, at most one of a key at once, all of them run.
    one_per_key_runs_everything(&s, q, "limited (at most 1 per key)");
    // A rate: two starts in any 1.5 s, so four tasks take at least one window after the first.
    for bad in [&["--rate", "5"][..], &["--rate", "5/soon"], &["--rate", "x/1s"], &["--rate-per-key"]] {
        let out = cli(&s, &[&["queue", "limit", q][..], bad].concat());
        assert_eq!(out.status.code(), Some(2), "{bad:?} is a usage error");
        assert!(!String::from_utf8_lossy(&out.stderr).trim().is_empty(), "{bad:?} is explained");
    }
    if s.driver.supports(asynctasq_core::Capability::RateLimits) {
        assert_eq!(
            json_of(&cli(&s, &["queue", "limit", q, "--rate", "2/1500ms", "--json"]))["rate"],
            serde_json::json!({"starts": 2, "window_ms": 1500, "per_key": false})
        );
        assert!(ok(&cli(&s, &["queue", "status", q])).contains("at most 2 started per 1s 500ms"), "the table marks it");
        s.dispatch(q, 4, 0, Duration::from_secs(30)).await;
        let began = std::time::Instant::now();
        let ran = json_of(&cli(&s, &["worker", "run-once", "--queues", q, "--concurrency", "4", "--json"]));
        assert_eq!(ran["succeeded"], 4, "within the rate, everything runs: {ran}");
        assert!(began.elapsed() >= Duration::from_millis(1500), "the second pair waited for the window: {:?}", began.elapsed());
    } else {
        let err = refused(&cli(&s, &["queue", "limit", q, "--rate", "2/1s"]));
        assert!(err.contains("cannot limit a queue's rate"), "refused, saying why: {err}");
    }
    assert!(ok(&cli(&s, &["queue", "limit", q, "--clear"])).contains("no limits"));
    assert_eq!(json_of(&cli(&s, &["queue", "status", q, "--json"]))["queues"][q]["max_leased"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_queue_is_worked_within_its_limit_on_sqlite() {
    a_limited_queue_is_worked_within_its_limit(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_queue_is_worked_within_its_limit_on_redis() {
    a_limited_queue_is_worked_within_its_limit(Backend::Redis(shared_redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_queue_is_worked_within_its_limit_on_mysql() {
    a_limited_queue_is_worked_within_its_limit(Backend::MySql(shared_mysql_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiting_is_refused_on_a_backend_that_cannot_enforce_it() {
    a_limited_queue_is_worked_within_its_limit(Backend::RabbitMq(shared_rabbitmq_url())).await;
}

/// On SQS a FIFO queue takes `--per-key 1` (what its message groups enforce: a task's key is
/// its group), shows it, and runs keyed tasks; every other limit, lifting it, and any limit
/// on a standard queue are refused, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_fifo_queue_takes_one_per_key_and_refuses_every_other_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), Backend::Sqs(shared_sqs_endpoint())).await;
    let q = "keyed.fifo";
    one_per_key_runs_everything(&s, q, "at most 1 per key");
    for (queue, args) in [
        (q, &["--per-key", "2"][..]),
        (q, &["--max-leased", "3"]),
        (q, &["--rate", "5/1s"]),
        (q, &["--clear"]),
        ("plain", &["--per-key", "1"]),
    ] {
        let err = refused(&cli(&s, &[&["queue", "limit", queue][..], args].concat()));
        assert!(err.contains("cannot limit"), "{queue} {args:?} refused, saying why: {err}");
    }
}

/// `dispatch --unique-key` dispatches nothing while a task holds the key, naming it; from a
/// file, lines whose derived key is held are skipped and counted; once the holder is done the
/// key is free. A backend without unique keys refuses, saying so, and stores nothing.
async fn dispatch_with_a_held_unique_key_dispatches_nothing(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Setup::on(dir.path(), backend).await;
    let q = "unique-cli";
    let args = ["dispatch", "ledgered", "--args", r#"{"n": 1, "sleep_ms": 0}"#, "--queue", q, "--unique-key", "nightly"];
    if !s.driver.supports(asynctasq_core::Capability::UniqueKeys) {
        let err = refused(&cli(&s, &args));
        assert!(err.contains("unique task"), "refused, saying why: {err}");
        let status = json_of(&cli(&s, &["queue", "status", q, "--json"]));
        assert_eq!(status["queues"][q]["ready"], 0, "nothing stored: {status}");
        return;
    }
    let first = json_of(&cli(&s, &[&args[..], &["--json"]].concat()));
    assert_eq!(first["outcome"], "new", "{first}");
    let again = json_of(&cli(&s, &[&args[..], &["--json"]].concat()));
    assert_eq!((again["outcome"].as_str(), &again["existing"]), (Some("duplicate"), &first["id"]), "{again}");
    assert!(ok(&cli(&s, &args)).contains(&format!("task {} holds this task's unique key", first["id"].as_str().expect("id"))));
    let file = dir.path().join("args.jsonl");
    std::fs::write(&file, "{\"n\": 2, \"sleep_ms\": 0}\n{\"n\": 3, \"sleep_ms\": 0}\n{\"n\": 2, \"sleep_ms\": 0}\n").expect("write");
    let path = file.to_str().expect("utf-8 path");
    let many = json_of(&cli(&s, &["dispatch", "ledgered", "--args-file", path, "--queue", q, "--unique-until", "done", "--json"]));
    assert_eq!(many, json!({ "dispatched": 2, "skipped": 1, "queue": q }), "the repeated line's key is held");
    let ran = json_of(&cli(&s, &["worker", "run-once", "--queues", q, "--json"]));
    assert_eq!(ran["succeeded"], 3, "{ran}");
    let free = json_of(&cli(&s, &[&args[..], &["--json"]].concat()));
    assert_eq!(free["outcome"], "new", "free once its holder is done: {free}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_with_a_held_unique_key_dispatches_nothing_on_sqlite() {
    dispatch_with_a_held_unique_key_dispatches_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_with_a_held_unique_key_dispatches_nothing_on_redis() {
    dispatch_with_a_held_unique_key_dispatches_nothing(Backend::Redis(shared_redis_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_dispatch_is_refused_on_a_backend_without_unique_keys() {
    dispatch_with_a_held_unique_key_dispatches_nothing(Backend::RabbitMq(shared_rabbitmq_url())).await;
}
