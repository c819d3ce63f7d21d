//! Renders `RELIABILITY.md` from the reports of one run of the reliability suite (one JSON
//! object per line, as `scripts/reliability` collects them): a table of scenario × backend.
//!
//! ```text
//! reliability-report tests/results/reliability-2026-11-23.jsonl > RELIABILITY.md
//! ```

use std::fmt::Write as _;
use std::process::ExitCode;

use asynctasq_tests::chaos::Report;

const SCENARIOS: &str = "\
| # | Scenario | What happens | What is asserted |
|---|---|---|---|
| 1 | kill -9 one of two, restart it | Two workers (concurrency 4) under a steady load; once a fifth of the tasks are done and the victim is running a task, it gets SIGKILL and a replacement starts. | 0 lost; duplicates ≤ what the victim held unsettled (running tasks plus the acks on their way, which the worker caps at 2 × concurrency: 3 × concurrency); its cut-short runs start again within 2 × the lease. |
| 2 | kill -9 every 1s, 5 times | Three workers under a steady load; every second one of them in turn (while it runs a task) gets SIGKILL and is restarted, five times. | 0 lost; duplicates ≤ 12 per kill (3 × concurrency); every cut-short run starts again within 2 × the lease. |
| 3 | server restart | Two workers drain a backlog; at a quarter the server restarts with its data kept: a Redis of the test's own with `appendfsync always` (SIGTERM, start), a PostgreSQL cluster of its own (`pg_ctl stop -m fast`, `start`), a MariaDB of its own (`mariadb-admin shutdown`, start), a RabbitMQ node of its own (`rabbitmqctl stop_app`, `start_app`); down 1.5 s. | 0 lost; duplicates ≤ what both workers held unsettled; both workers keep running and exit 0 on SIGTERM. |
| 4 | connection kill x3 | As 3, but every client connection is killed three times, 200-300 ms apart (`CLIENT KILL TYPE normal`, `pg_terminate_backend`, `KILL CONNECTION`, `rabbitmqctl close_all_connections`). | As 3, the bound counted per kill. |
| 5 | graceful deploy | A worker runs a full set of 2 s tasks (lease 300 s) and gets SIGTERM with `--shutdown-grace 300ms`; then the next worker starts. | Exits 0; every cut-short task runs again on the next worker at once (< 3 s, not at lease expiry); 0 lost, 0 duplicates. |
| 6 | task 3x its lease, heartbeats on | Twelve 3 s tasks with a 1 s lease on two workers (heartbeat every lease/3). | Every task starts exactly once. |
| 7 | half-open (both ways, mid-run) | One worker (concurrency 4) reaches the backend through a TCP proxy of the test's own; once a third of 120 tasks are done, every connection the proxy carries stops forwarding both ways (no FIN, no RST; new connections work) and 120 more tasks are dispatched directly. Lease 8 s. | 0 lost; the worker starts the first new task within 15 s of the fault (**resumed**), opened new connections, is still running and exits 0 on SIGTERM; the tasks it held run again within 2 × the lease. |
| 8 | half-open (answers only, idle) | As 7, but the fault hits while the worker is idle in its blocking wait, and only the backend's answers stop: requests still reach it and take effect (a claim whose answer is lost leases tasks nobody runs). | As 7. |
";

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: reliability-report RELIABILITY.jsonl > RELIABILITY.md");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut reports = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match serde_json::from_str::<Report>(line) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("error: {path}:{}: not a report: {e}", i + 1);
                return ExitCode::FAILURE;
            }
        }
    }
    print!("{}", render(&path, &reports));
    ExitCode::SUCCESS
}

const BACKENDS: [&str; 6] = ["SQLite", "Redis", "PostgreSQL", "MariaDB", "RabbitMQ", "SQS (moto)"];

fn render(path: &str, reports: &[Report]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Reliability\n\n\
         The promise: **at-least-once, no task lost**, on every backend, through crashes, restarts, \
         connection loss and deploys. The reliability suite (`tests/tests/chaos.rs`, harness in \
         `tests/src/chaos.rs`) proves it with real `ledger-worker` processes against the real servers. \
         Every task records its start and its completion in a ledger outside the queue (a SQLite file), \
         and the ledger is read at the end.\n\n\
         Reproduce every number below with `scripts/reliability` (runs the suite one test at a time, \
         writes `{path}` and this file; ~5 minutes). The same tests run in CI as part of `scripts/test`, \
         where each asserts its promise. One scenario alone: the command in the last column.\n\n\
         ## Scenarios\n\n{SCENARIOS}\n\
         Columns: **lost** tasks never completed; **dup.** completions beyond a task's first (allowed: \
         the bound in the scenario); **in flight** runs started and unfinished when a fault hit; \
         **back within** the longest time from a fault until one of its cut-short runs started again \
         (the lease is 2 s unless noted; when the task's next run skipped an attempt, its redelivery \
         was claimed by a worker a later fault stopped before it started, and the time counts from \
         that later fault); **stall** the longest gap between two completions after the \
         first fault; **resumed** (half-open faults) the time from the fault until the worker started \
         the first task dispatched after it, which it can only have received on a new connection.\n\n\
         How the backends differ: on RabbitMQ a dead worker's unacked deliveries go back when the \
         broker sees its connection close, so orphans return in milliseconds; everywhere else they \
         return when their lease expires (at most one lease after the kill, as heartbeats renew \
         it every third). On RabbitMQ an ack belongs to the channel that received the delivery, so \
         a lost connection also re-delivers the tasks that were running on it and finished: the \
         connection-kill duplicates there are those.\n\n\
         Attempts: a delivery cut short by a crash, a lost connection or an expired lease is an \
         attempt spent (so a task that kills its worker every time ends dead instead of looping). A \
         task can be cut short more than once in one scenario (once per fault, and its redelivery \
         again when the worker that claimed it is killed before starting it), and with the default \
         `max_attempts` of 3 it would be dead-lettered with the reason `delivery 4 exceeds max \
         attempts 3: earlier deliveries ended without a result (worker crash or expired lease)`. \
         That is what an early version of scenario 2 found in CI; the scenarios test loss, not \
         attempt exhaustion, so their tasks are dispatched with 25 attempts.\n"
    );
    let mut scenarios: Vec<&str> = Vec::new();
    for r in reports {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    scenarios.sort_by_key(|s| order(s));
    let _ = writeln!(
        md,
        "## Last run\n\n| Scenario | Backend | Tasks | Lost | Dup. (allowed) | In flight | Back within | Stall | Resumed | Took | Reproduce |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for scenario in &scenarios {
        for backend in BACKENDS {
            for r in reports.iter().filter(|r| r.scenario == *scenario && r.backend == backend) {
                let back = r.recovery_ms.map_or("—".to_owned(), |ms| format!("{:.2} s", ms as f64 / 1000.0));
                let lease = if r.lease_ms == 2000 { String::new() } else { format!(" (lease {} s)", r.lease_ms / 1000) };
                let resumed = r.resumed_ms.map_or("—".to_owned(), |ms| format!("{:.2} s", ms as f64 / 1000.0));
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} ({}) | {} | {}{} | {:.2} s | {} | {:.1} s | `cargo test -p asynctasq-tests --test chaos -- --exact {}` |",
                    r.scenario,
                    r.backend,
                    r.tasks,
                    r.lost,
                    r.duplicates,
                    r.allowed_duplicates,
                    r.in_flight,
                    back,
                    lease,
                    r.stall_ms as f64 / 1000.0,
                    resumed,
                    r.seconds,
                    r.test,
                );
            }
        }
    }
    let missing: Vec<String> = scenarios
        .iter()
        .flat_map(|s| BACKENDS.iter().filter(move |b| !reports.iter().any(|r| r.scenario == *s && r.backend == **b)).map(move |b| (s, b)))
        .filter(|(s, b)| !not_applicable(s, b))
        .map(|(s, b)| format!("{s} on {b}"))
        .collect();
    let _ = writeln!(
        md,
        "\nServer restarts, connection kills and half-open connections do not apply to SQLite \
         (embedded: no server, no connection); server restarts and connection kills not to SQS (moto keeps no state across a restart and AWS cannot be restarted; \
         every SQS request is an HTTP exchange of its own)."
    );
    if !missing.is_empty() {
        let _ = writeln!(md, "\n**Missing from this run:** {}.", missing.join("; "));
    }
    let _ = write!(md, "\n{BEYOND_ONE_SERVER}");
    md
}

/// Faults of clusters and poolers: run by their own tests (not the chaos suite's ledger
/// reports), their figures written here by hand from the runs the text names.
const BEYOND_ONE_SERVER: &str = include_str!("beyond_one_server.md");

/// Scenarios a backend has nothing to apply to.
fn not_applicable(scenario: &str, backend: &str) -> bool {
    ((scenario.starts_with("server restart") || scenario.starts_with("connection kill")) && matches!(backend, "SQLite" | "SQS (moto)"))
        || (scenario.starts_with("half-open") && backend == "SQLite")
}

/// The order of the scenarios table.
fn order(scenario: &str) -> usize {
    [
        "kill -9 one",
        "kill -9 every",
        "server restart",
        "connection kill",
        "graceful deploy",
        "task 3x",
        "half-open (both",
        "half-open (answers",
    ]
    .iter()
    .position(|p| scenario.starts_with(p))
    .unwrap_or(usize::MAX)
}
