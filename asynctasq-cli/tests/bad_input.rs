//! The stock `asynctasq` binary refuses bad input with a one-line error naming the problem,
//! and never prints a password from a URL.

use assert_cmd::Command;

fn asynctasq(dir: &std::path::Path) -> Command {
    let mut cmd = Command::cargo_bin("asynctasq").expect("binary");
    cmd.current_dir(dir).env_remove("ASYNCTASQ_DATABASE_URL").env_remove("ASYNCTASQ_DRIVER").env_remove("ASYNCTASQ_QUEUES");
    cmd
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unknown_driver_is_a_usage_error_listing_the_choices() {
    let dir = tempfile::tempdir().expect("dir");
    let out = asynctasq(dir.path()).args(["worker", "--driver", "nosuch"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("nosuch") && err.contains("sqlite"), "{err}");
}

#[test]
fn mismatched_url_is_named_without_its_password() {
    let dir = tempfile::tempdir().expect("dir");
    // The URL's scheme picks the backend; only an explicit --driver can contradict it.
    let out = asynctasq(dir.path())
        .args(["worker", "--driver", "sqlite", "--database-url", "postgres://app:hunter2@127.0.0.1/db"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "contradicting flags are a usage error");
    let err = stderr(&out);
    assert!(err.contains("--driver sqlite contradicts --database-url"), "{err}");
    assert!(!err.contains("hunter2"), "password leaked: {err}");
    assert!(err.contains("app:***@"), "{err}");
    // Without --driver the scheme picks PostgreSQL (whose server refuses this role).
    let out = asynctasq(dir.path()).args(["worker", "--database-url", "postgres://app:hunter2@127.0.0.1/db"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cannot connect to PostgreSQL at postgres://app:***@127.0.0.1/db") && !err.contains("hunter2"), "{err}");
}

#[test]
fn password_in_environment_url_is_hidden_from_help() {
    let dir = tempfile::tempdir().expect("dir");
    let out =
        asynctasq(dir.path()).env("ASYNCTASQ_DATABASE_URL", "postgres://app:hunter2@127.0.0.1/db").arg("--help").output().expect("run");
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2"));
}

#[test]
fn unopenable_database_names_the_problem() {
    let dir = tempfile::tempdir().expect("dir");
    let out = asynctasq(dir.path()).args(["worker", "--database-url", "sqlite:///nonexistent/dir/x.db"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cannot open the SQLite database"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

#[test]
fn malformed_queue_list_is_named() {
    let dir = tempfile::tempdir().expect("dir");
    for (queues, expected) in [("bad name", "`bad name`"), ("high:0", "weight must be at least 1"), ("a,a", "listed twice")] {
        let out = asynctasq(dir.path()).args(["worker", "--queues", queues]).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "a bad --queues is a usage error");
        assert!(stderr(&out).contains(expected), "{queues}: {}", stderr(&out));
    }
}

#[test]
fn malformed_queue_concurrency_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().expect("dir");
    for (caps, expected) in
        [("export", "is not QUEUE=N"), ("export=0", "not a count of at least 1"), ("other=2", "`other` is not one of --queues")]
    {
        let out = asynctasq(dir.path()).args(["worker", "--queues", "export,default", "--queue-concurrency", caps]).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{caps}: {}", stderr(&out));
        assert!(stderr(&out).contains("--queue-concurrency") && stderr(&out).contains(expected), "{caps}: {}", stderr(&out));
    }
}

#[test]
fn zero_concurrency_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let out = asynctasq(dir.path()).args(["worker", "--concurrency", "0"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--concurrency"), "{}", stderr(&out));
}

#[test]
fn malformed_duration_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("dir");
    let out = asynctasq(dir.path()).args(["worker", "--max-time", "soon"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--max-time"), "{}", stderr(&out));
}

#[test]
fn stock_binary_explains_that_workers_need_linked_tasks() {
    let dir = tempfile::tempdir().expect("dir");
    let out = asynctasq(dir.path()).args(["worker"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no tasks are registered in this binary"), "{}", stderr(&out));
}

#[test]
fn unreachable_or_malformed_rabbitmq_url_is_named_without_its_password() {
    let dir = tempfile::tempdir().expect("dir");
    // Port 1 on loopback: nothing listens there.
    for (url, expected) in
        [("amqp://app:hunter2@127.0.0.1:1/%2f", "cannot connect to RabbitMQ"), ("amqp://app:hunter2@[::1", "invalid RabbitMQ URL")]
    {
        let out = asynctasq(dir.path()).args(["--driver", "rabbitmq", "--rabbitmq-url", url, "migrate"]).output().expect("run");
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains(expected) && err.contains("app:***@"), "{err}");
        assert!(!err.contains("hunter2"), "password leaked: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn unreachable_sqs_endpoint_is_named_without_the_secret_key() {
    let dir = tempfile::tempdir().expect("dir");
    // Port 1 on loopback: nothing listens there.
    let out = asynctasq(dir.path())
        .args(["--driver", "sqs", "--sqs-region", "us-east-1", "--sqs-endpoint-url", "http://127.0.0.1:1", "migrate"])
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "hunter2-secret")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cannot connect to SQS at http://127.0.0.1:1"), "{err}");
    assert!(!err.contains("hunter2-secret"), "secret leaked: {err}");
    let out = asynctasq(dir.path()).args(["--driver", "sqs", "--sqs-endpoint-url", "127.0.0.1:4566", "migrate"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("must start with http://"), "{}", stderr(&out));
}

#[test]
fn zero_request_timeout_is_a_usage_error_naming_the_flag() {
    let dir = tempfile::tempdir().expect("dir");
    for flag in ["--request-timeout", "--rabbitmq-heartbeat"] {
        let out = asynctasq(dir.path()).args(["worker", flag, "0s"]).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let err = stderr(&out);
        assert!(err.contains(flag) && err.contains("longer than zero"), "{err}");
    }
}

#[test]
fn bad_queue_names_are_usage_errors_echoing_at_most_a_short_excerpt() {
    let dir = tempfile::tempdir().expect("dir");
    let huge = "x".repeat(10_000) + " y";
    for args in [
        vec!["worker", "--queues", huge.as_str()],
        vec!["queue", "status", huge.as_str()],
        vec!["dead", "list", huge.as_str()],
        vec!["dispatch", "some_task", "--queue", "bad name"],
    ] {
        let out = asynctasq(dir.path()).args(&args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{:?}: {}", &args[..2], stderr(&out));
        let err = stderr(&out);
        assert!(err.len() < 600, "the error echoes an excerpt, not all 10 KB: {} bytes", err.len());
        assert!(err.contains("queue"), "{err}");
    }
}

#[test]
fn memory_driver_is_refused_by_commands_whose_work_would_vanish() {
    let dir = tempfile::tempdir().expect("dir");
    for args in [vec!["dispatch", "some_task", "--args", "{}"], vec!["queue", "status"], vec!["dead", "list"], vec!["worker"]] {
        let out = asynctasq(dir.path()).args(&args).args(["--driver", "memory"]).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("--driver memory") && err.contains("loses them"), "{args:?}: {err}");
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

#[test]
fn connection_errors_say_their_cause_once_and_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let port = closed_port();
    for (flags, cause) in [
        (
            vec!["--driver".to_owned(), "postgres".into(), "--database-url".into(), format!("postgres://postgres@127.0.0.1:{port}/test")],
            "Connection refused",
        ),
        (
            vec!["--driver".into(), "mysql".into(), "--database-url".into(), format!("mysql://root@127.0.0.1:{port}/test")],
            "Connection refused",
        ),
        (vec!["--driver".into(), "redis".into(), "--redis-url".into(), format!("redis://127.0.0.1:{port}")], "Connection refused"),
        (
            vec!["--driver".into(), "postgres".into(), "--database-url".into(), "postgres://nobody@127.0.0.1:5432/test".into()],
            "\"nobody\" does not exist",
        ),
        (vec!["--database-url".into(), "sqlite:///nonexistent/dir/x.db".into()], "unable to open database file"),
    ] {
        let began = std::time::Instant::now();
        let out = asynctasq(dir.path()).args(["queue", "status"]).args(&flags).output().expect("run");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {err}");
        assert_eq!(err.matches(cause).count(), 1, "the cause once: {err}");
        assert_eq!(err.matches("cannot connect to").count() + err.matches("cannot open").count(), 1, "what failed once: {err}");
        assert!(began.elapsed() < std::time::Duration::from_secs(3), "reported at once, not after a pool timeout: {:?}", began.elapsed());
    }
}

#[test]
fn subcommand_help_shows_its_own_flags_first_and_the_backend_flags_in_one_group() {
    let dir = tempfile::tempdir().expect("dir");
    let short = String::from_utf8(asynctasq(dir.path()).args(["worker", "-h"]).output().expect("run").stdout).expect("utf-8");
    let at = |text: &str, what: &str| text.find(what).unwrap_or_else(|| panic!("`{what}` in: {text}"));
    assert!(at(&short, "--queues") < at(&short, "Backend (") && at(&short, "Backend (") < at(&short, "--driver <DRIVER>"), "{short}");
    assert!(!short.contains("--redis-prefix") && !short.contains("--sqs-region"), "-h keeps the backend group short: {short}");
    assert!(short.lines().count() < 45, "{} lines: {short}", short.lines().count());
    let long = String::from_utf8(asynctasq(dir.path()).args(["worker", "--help"]).output().expect("run").stdout).expect("utf-8");
    assert!(long.contains("--redis-prefix") && long.contains("--sqs-region"), "--help has every backend flag of this build");
}

#[test]
fn a_password_given_as_a_flag_is_hidden_like_one_in_the_url() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let out = asynctasq(dir.path()).args(["queue", "status", "--redis-url", &url, "--redis-password", "hunter2"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr(&out).contains("hunter2"), "password leaked: {}", stderr(&out));
    let help = asynctasq(dir.path()).env("ASYNCTASQ_REDIS_PASSWORD", "hunter2").args(["worker", "--help"]).output().expect("run");
    assert!(!String::from_utf8_lossy(&help.stdout).contains("hunter2"), "password in --help");
}

#[test]
fn contradicting_task_defaults_are_usage_errors_naming_the_flags() {
    let dir = tempfile::tempdir().expect("dir");
    for (args, says) in [
        (&["--default-retry", "fixed", "--default-backoff-cap", "1h"][..], "--default-backoff-cap"),
        (&["--default-backoff", "1h", "--default-backoff-cap", "1m"][..], "at least --default-backoff"),
        (&["--task-defaults-max-attempts", "0"][..], "--default-max-attempts"),
        (&["--default-lease", "1ms"][..], "--default-lease"),
        (&["--default-retry", "linear"][..], "--default-retry"),
        (&["--blocking-threads", "0"][..], "--blocking-threads"),
    ] {
        let out = asynctasq(dir.path()).arg("worker").args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn http_flags_name_their_mistakes_and_never_echo_the_token() {
    let dir = tempfile::tempdir().expect("dir");
    let out = asynctasq(dir.path()).args(["worker", "--http", "localhost-9464"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "a malformed address is a usage error");
    assert!(stderr(&out).contains("--http"), "{}", stderr(&out));
    let out = asynctasq(dir.path()).args(["worker", "--http-token", "s3cret-token-of-some-length"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "a token without a listener is a usage error");
    let err = stderr(&out);
    assert!(err.contains("--http-token needs --http"), "{err}");
    assert!(!err.contains("s3cret"), "the token is never echoed: {err}");
    let out = asynctasq(dir.path()).args(["worker", "--http", "127.0.0.1:0", "--http-token", "short"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("at least 16 characters"), "{}", stderr(&out));
    let help =
        asynctasq(dir.path()).args(["worker", "--help"]).env("ASYNCTASQ_HTTP_TOKEN", "s3cret-token-of-some-length").output().expect("run");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--http-token") && !help.contains("s3cret"), "--help shows the flag, never its value: {help}");
}

#[test]
fn dashboard_off_loopback_without_credentials_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("dir");
    let out = asynctasq(dir.path()).args(["dashboard", "--listen", "0.0.0.0:0"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("refusing to serve the dashboard on 0.0.0.0:0 without credentials") && err.contains("--auth-token"), "{err}");
    let out = asynctasq(dir.path()).args(["worker", "--http", "0.0.0.0:0", "--dashboard"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "the worker's listener too: {}", stderr(&out));
}

#[test]
fn dashboard_credentials_are_checked_and_never_echoed() {
    let dir = tempfile::tempdir().expect("dir");
    let out = asynctasq(dir.path()).args(["dashboard", "--auth-token", "hunter2"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("invalid --auth-token: a dashboard token must be at least 16 characters") && !err.contains("hunter2"), "{err}");
    let out = asynctasq(dir.path()).args(["dashboard", "--basic-auth", "admin-hunter2"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
    let out = asynctasq(dir.path())
        .env("ASYNCTASQ_DASHBOARD_TOKEN", "hunter2-hunter2-hunter2")
        .env("ASYNCTASQ_DASHBOARD_BASIC_AUTH", "admin:hunter2-hunter2")
        .args(["dashboard", "--help"])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2"), "help shows no secret");
}
