//! Secrets never leave the process: a password in a DSN (flag or environment) or an AWS secret
//! key appears in no `--help` text, error, `doctor` report or log line, even at trace level,
//! whether the server is unreachable, refuses the credentials or accepts them.

use std::time::Duration;

use assert_cmd::Command;
use asynctasq_tests::{SQS_TEST_ENV, shared_sqs_endpoint};

const SECRET: &str = "Sup3r-S3cret-Pw";

/// The CLI (the `ledger-worker` user binary) with trace logs on and no backend set up.
fn cli() -> Command {
    let mut cmd = Command::cargo_bin("ledger-worker").expect("binary");
    cmd.env("ASYNCTASQ_LOG", "trace").env("NO_COLOR", "1").timeout(Duration::from_secs(60));
    for var in ["ASYNCTASQ_DRIVER", "ASYNCTASQ_DATABASE_URL", "ASYNCTASQ_REDIS_URL", "ASYNCTASQ_RABBITMQ_URL"] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd` and returns everything it printed, checking the secret is not in it.
fn output_without_secret(cmd: &mut Command, what: &str) -> (bool, String) {
    let out = cmd.output().expect("run the CLI");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains(SECRET), "{what}: the secret leaked:\n{text}");
    (out.status.success(), text)
}

#[test]
fn help_never_shows_a_secret_set_in_the_environment() {
    for args in [&["--help"][..], &["worker", "--help"], &["doctor", "--help"], &["queue", "status", "--help"], &["migrate", "--help"]] {
        let mut cmd = cli();
        cmd.args(args)
            .env("ASYNCTASQ_DATABASE_URL", format!("postgres://app:{SECRET}@127.0.0.1:1/db"))
            .env("ASYNCTASQ_REDIS_URL", format!("redis://:{SECRET}@127.0.0.1:1"))
            .env("ASYNCTASQ_RABBITMQ_URL", format!("amqp://app:{SECRET}@127.0.0.1:1/%2f"))
            .env("AWS_SECRET_ACCESS_KEY", SECRET);
        let (ok, text) = output_without_secret(&mut cmd, &format!("{args:?}"));
        assert!(ok && text.contains("Usage"), "{args:?} prints help: {text}");
    }
}

/// Each DSN flag with a password, against a server that is not there and against the real one
/// refusing (or, with trust authentication, ignoring) the password.
fn dsns() -> Vec<(&'static str, &'static str, String)> {
    vec![
        ("postgres", "--database-url", format!("postgres://postgres:{SECRET}@127.0.0.1:1/test")),
        ("postgres", "--database-url", format!("postgres://postgres:{SECRET}@127.0.0.1:5432/test")),
        ("mysql", "--database-url", format!("mysql://root:{SECRET}@127.0.0.1:1/test")),
        ("mysql", "--database-url", format!("mysql://root:{SECRET}@127.0.0.1:3306/test")),
        ("redis", "--redis-url", format!("redis://:{SECRET}@127.0.0.1:1")),
        ("redis", "--redis-url", format!("redis://default:{SECRET}@127.0.0.1:6379")),
        ("rabbitmq", "--rabbitmq-url", format!("amqp://guest:{SECRET}@127.0.0.1:1/%2f")),
        ("rabbitmq", "--rabbitmq-url", format!("amqp://guest:{SECRET}@127.0.0.1:5672/%2f")),
    ]
}

#[test]
fn dsn_passwords_appear_in_no_error_report_or_log_line() {
    for (driver, flag, url) in dsns() {
        let reachable = !url.contains(":1/") && !url.ends_with(":1");
        // Names of the test's own on the real servers (the test script sweeps these prefixes).
        let prefix: &[&str] = match driver {
            "postgres" | "mysql" => &["--table-prefix", "asynctasq_test_secrets"],
            "redis" => &["--redis-prefix", "asynctasq-test-secrets:"],
            _ => &["--rabbitmq-prefix", "asynctasq-test-secrets"],
        };
        for command in [&["doctor"][..], &["queue", "status"], &["worker", "--queues", "secrets-test", "--stop-when-empty"]] {
            let what = format!("{command:?} on {driver} ({})", if reachable { "real server" } else { "nothing listening" });
            let mut cmd = cli();
            cmd.args(command).args(["--driver", driver, flag, &url]).args(prefix);
            let (ok, text) = output_without_secret(&mut cmd, &what);
            if reachable && command[0] == "worker" && prefix[0] == "--table-prefix" {
                assert!(text.contains(" DEBUG "), "{what}: the logs were really written (trace level): {text}");
            }
            if !reachable {
                assert!(!ok, "{what} fails");
                assert!(text.contains("127.0.0.1:1"), "{what} names where it tried to connect: {text}");
            }
        }
    }
}

#[test]
fn aws_secret_key_appears_in_no_report_or_log_line() {
    for command in [&["doctor"][..], &["queue", "status"], &["worker", "--queues", "secrets-test", "--stop-when-empty"]] {
        let mut cmd = cli();
        cmd.args(command).args(["--driver", "sqs", "--sqs-endpoint-url", &shared_sqs_endpoint(), "--sqs-queue-prefix", "at-secrets-"]);
        for (k, v) in SQS_TEST_ENV {
            cmd.env(k, v);
        }
        cmd.env("AWS_SECRET_ACCESS_KEY", SECRET);
        output_without_secret(&mut cmd, &format!("{command:?} on SQS"));
    }
}
