//! The reliability suite: every chaos scenario of `asynctasq_tests::chaos` on every backend it
//! applies to, with real worker processes and a ledger outside the queue. Server restarts and
//! connection kills run against servers of the test's own; the shared services are never
//! disturbed. `scripts/reliability` runs this file alone and renders `RELIABILITY.md`.

use std::time::Duration;

use asynctasq_tests::chaos::Chaos;
use asynctasq_tests::proxy::Freeze;
use asynctasq_tests::{
    Backend, OwnMariaDb, OwnPostgres, OwnRabbit, OwnRedis, OwnServer, Setup, host_port, shared_mysql_url, shared_postgres_url,
    shared_rabbitmq_url, shared_redis_url, shared_sqs_endpoint,
};

const WORKER: &str = env!("CARGO_BIN_EXE_ledger-worker");

/// The load a backend's scenarios run at: moto (SQS) serves ~25 receives a second on this
/// machine, every other backend far more than the workers' 200-300 tasks a second.
struct Load {
    tasks: u64,
    task_ms: u64,
    rate: u64,
    repeated_tasks: u64,
    repeated_rate: u64,
    /// Duplicates the server itself may add (moto's receive takes no lock: two receives at
    /// the same instant can both take a message; AWS's do not race so).
    races: u64,
}

const FAST: Load = Load { tasks: 400, task_ms: 40, rate: 100, repeated_tasks: 1000, repeated_rate: 150, races: 0 };
const MOTO: Load = Load { tasks: 100, task_ms: 400, rate: 10, repeated_tasks: 80, repeated_rate: 10, races: 8 };

/// Expands the scenarios every backend runs: kill -9 and restart, repeated kills, graceful
/// deploy, tasks longer than their lease.
macro_rules! process_scenarios {
    ($name:literal, $backend:expr, $load:expr) => {
        async fn setup(dir: &std::path::Path) -> Setup {
            Setup::on(dir, $backend).await
        }

        fn chaos(s: &Setup) -> Chaos<'_> {
            Chaos { setup: s, exe: WORKER, backend: $name, races: $load.races }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sigkill_of_one_worker_loses_no_task_and_orphans_return_within_two_leases() {
            let dir = tempfile::tempdir().expect("temp dir");
            let s = setup(dir.path()).await;
            chaos(&s).kill_and_restart($load.tasks, $load.rate, $load.task_ms).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn repeated_sigkills_lose_no_task() {
            let dir = tempfile::tempdir().expect("temp dir");
            let s = setup(dir.path()).await;
            chaos(&s).repeated_kills($load.repeated_tasks, $load.repeated_rate, $load.task_ms, 5, Duration::from_millis(1000)).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn graceful_deploy_releases_unfinished_tasks_to_the_next_worker_at_once() {
            let dir = tempfile::tempdir().expect("temp dir");
            let s = setup(dir.path()).await;
            chaos(&s).graceful_deploy().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn task_longer_than_its_lease_runs_once_while_heartbeats_renew_it() {
            let dir = tempfile::tempdir().expect("temp dir");
            let s = setup(dir.path()).await;
            chaos(&s).longer_than_lease().await;
        }
    };
}

/// Expands the half-open scenarios of a backend reached over a connection at `$url`: its
/// worker goes through a proxy of the test's own (the shared server is never disturbed).
macro_rules! half_open_scenarios {
    ($url:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn half_open_connections_mid_run_stall_the_worker_only_until_its_deadlines_replace_them() {
            let dir = tempfile::tempdir().expect("temp dir");
            let s = setup(dir.path()).await;
            chaos(&s).half_open(&host_port(&$url), Freeze::Both, false).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn answers_lost_while_the_worker_waits_idle_cost_one_deadline_not_the_worker() {
            let dir = tempfile::tempdir().expect("temp dir");
            let s = setup(dir.path()).await;
            chaos(&s).half_open(&host_port(&$url), Freeze::Answers, true).await;
        }
    };
}

/// Expands the scenarios of a backend with a server, on a server of the test's own: a restart,
/// and connection kills `$gap_ms` apart.
macro_rules! server_scenarios {
    ($server:ty, $backend:expr, $gap_ms:literal) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn server_restart_loses_no_task() {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut server = <$server>::start();
            let s = Setup::on(dir.path(), ($backend)(server.url())).await;
            chaos(&s).server_restart(&mut server, FAST.tasks).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn connection_kills_mid_run_lose_no_task() {
            let dir = tempfile::tempdir().expect("temp dir");
            let server = <$server>::start();
            let s = Setup::on(dir.path(), ($backend)(server.url())).await;
            chaos(&s).connection_kills(&server, FAST.tasks, Duration::from_millis($gap_ms)).await;
        }
    };
}

mod sqlite {
    use super::*;
    process_scenarios!("SQLite", Backend::Sqlite, FAST);
}

/// A server backend's module: every scenario, half-open connections on the shared server
/// at `$url`, restarts and connection kills (`$gap_ms` apart) on a `$server` of its own.
macro_rules! server_backend {
    ($module:ident, $name:literal, $backend:expr, $url:expr, $server:ty, $gap_ms:literal) => {
        mod $module {
            use super::*;
            half_open_scenarios!($url);
            process_scenarios!($name, ($backend)($url), FAST);
            server_scenarios!($server, $backend, $gap_ms);
        }
    };
}

// Redis's own server keeps an append-only file, fsynced on every write.
server_backend! { redis, "Redis", Backend::Redis, shared_redis_url(), OwnRedis, 200 }
server_backend! { postgres, "PostgreSQL", Backend::Postgres, shared_postgres_url(), OwnPostgres, 300 }
server_backend! { mysql, "MariaDB", Backend::MySql, shared_mysql_url(), OwnMariaDb, 300 }

mod rabbitmq {
    use super::*;
    half_open_scenarios!(shared_rabbitmq_url());
    process_scenarios!("RabbitMQ", Backend::RabbitMq(shared_rabbitmq_url()), FAST);

    /// The broker counts every delivery a killed worker held as an attempt, started or not, so
    /// the default prefetch holds no more than the worker runs: a kill costs an attempt only
    /// of tasks it could have started. Measured under a backlog (tasks arrive at twice what the
    /// workers run, so every buffer is full) beside the earlier default (twice the
    /// concurrency), with tasks allowed one attempt each, so every attempt a kill costs is a
    /// dead task: 40 and 20 on this machine.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sigkill_costs_an_attempt_only_of_tasks_the_worker_could_run() {
        const KILLS: usize = 5;
        let mut dead = Vec::new();
        for extra in [&["--rabbitmq-prefetch", "8"][..], &[]] {
            let dir = tempfile::tempdir().expect("temp dir");
            let s = setup(dir.path()).await;
            dead.push(chaos(&s).dead_after_kills(1500, 600, 40, KILLS, Duration::from_millis(1000), extra).await);
        }
        eprintln!("dead after {KILLS} kills of a worker running 4: {} with prefetch 8, {} with the default", dead[0], dead[1]);
        assert!(dead[1] <= KILLS as u64 * 4, "{} dead: more than the 4 running tasks per kill", dead[1]);
    }
    server_scenarios!(OwnRabbit, Backend::RabbitMq, 300);
}

mod sqs {
    use super::*;
    half_open_scenarios!(shared_sqs_endpoint());
    // No restart scenario: moto keeps no state across a restart (AWS itself cannot be
    // restarted), and SQS has no connection to kill (each request is its own HTTP exchange).
    process_scenarios!("SQS (moto)", Backend::Sqs(shared_sqs_endpoint()), MOTO);
}
