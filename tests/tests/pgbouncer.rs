//! PostgreSQL behind PgBouncer in transaction pooling mode (a pooler of this test binary's own,
//! four server connections shared by every client): the whole conformance suite, with a direct
//! connection for `LISTEN` and migrations (`listen_url`), and without one (workers poll; result
//! and cancel notices are declared lacking).

use std::sync::{Arc, OnceLock};

use asynctasq_core::Driver;
use asynctasq_tests::OwnPgBouncer;

const DIRECT: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The pooler the tests of this binary share, started by the first that needs it and stopped
/// with the process.
fn bouncer() -> &'static OwnPgBouncer {
    static BOUNCER: OnceLock<OwnPgBouncer> = OnceLock::new();
    BOUNCER.get_or_init(OwnPgBouncer::start)
}

/// `s` percent-encoded for a URL's query.
fn encoded(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn prefix() -> String {
    format!("asynctasq_test_{:08x}", fastrand::u32(..))
}

mod with_listen_url {
    use super::*;

    async fn driver() -> Arc<dyn Driver> {
        let url = format!("{}?pgbouncer=true&listen_url={}&table_prefix={}&max_connections=4", bouncer().url(), encoded(DIRECT), prefix());
        asynctasq_drivers::connect(&url).await.unwrap_or_else(|e| panic!("PostgreSQL through the test's own PgBouncer: {e}"))
    }

    asynctasq_core::conformance_tests!(driver);
}

mod polling {
    use super::*;

    async fn driver() -> Arc<dyn Driver> {
        let prefix = prefix();
        // The tables come from a direct connection (migrations need one), as an operator's
        // `asynctasq migrate` would make them.
        asynctasq_drivers::connect(&format!("{DIRECT}?table_prefix={prefix}")).await.expect("PostgreSQL must be reachable");
        let url = format!("{}?pgbouncer=true&migrate=false&table_prefix={prefix}&max_connections=4", bouncer().url());
        asynctasq_drivers::connect(&url).await.unwrap_or_else(|e| panic!("PostgreSQL through the test's own PgBouncer: {e}"))
    }

    asynctasq_core::conformance_tests!(driver, lacks: [ResultNotify, CancelNotify]);
}

/// Behind a pooler without a direct connection, migrations are refused with the way out,
/// rather than taking a session lock the pooler would strand.
#[tokio::test]
async fn migrations_through_the_pooler_are_refused_naming_listen_url() {
    let url = format!("{}?pgbouncer=true&table_prefix={}", bouncer().url(), prefix());
    let Err(error) = asynctasq_drivers::connect(&url).await else { panic!("migrations through the pooler were not refused") };
    let error = error.to_string();
    assert!(error.contains("listen_url") && error.contains("migrate=false"), "{error}");
}

/// A `ledger-worker` process reaching PostgreSQL only through the pooler (`--pgbouncer`, the
/// URL's `migrate=false`, no direct connection: it polls) and one with `--listen-url` both
/// drain their queue (tasks 0 to 499 each), every task once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_drain_through_the_pooler_with_and_without_a_direct_connection() {
    const WORKER: &str = env!("CARGO_BIN_EXE_ledger-worker");
    let dir = tempfile::tempdir().expect("temp dir");
    // Tasks are dispatched directly, which also creates the tables.
    let s = asynctasq_tests::Setup::on(dir.path(), asynctasq_tests::Backend::Postgres(DIRECT.into())).await;
    let pooled = format!("{}?migrate=false", bouncer().url());
    let args: Vec<String> = s.backend_args.iter().map(|a| if a == DIRECT { pooled.clone() } else { a.clone() }).collect();
    assert!(args.contains(&pooled), "the worker's URL is the pooler's: {args:?}");
    s.dispatch("polled", 500, 0, std::time::Duration::from_secs(30)).await;
    s.dispatch("listened", 500, 0, std::time::Duration::from_secs(30)).await;
    let workers = [
        s.spawn_worker_on(WORKER, &args, "polled", 8, &["--pgbouncer"]),
        s.spawn_worker_on(WORKER, &args, "listened", 8, &["--pgbouncer", "--listen-url", DIRECT]),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let done: u32 = s.completions().await.values().sum();
        if done >= 1000 {
            break;
        }
        let (polled, listened) = (s.driver.stats("polled").await.expect("stats"), s.driver.stats("listened").await.expect("stats"));
        assert!(std::time::Instant::now() < deadline, "{done} of 1,000 ran within 60 s; left: polled {polled:?}, listened {listened:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Tasks 0..500 of each queue: each number ran once per queue.
    let done = s.completions().await;
    assert!(done.len() == 500 && done.values().all(|runs| *runs == 2), "every task ran once");
    for mut w in workers {
        assert!(w.running(), "the worker is still running");
        w.sigterm();
        assert!(w.exited_ok().await, "the worker stops cleanly");
    }
}
