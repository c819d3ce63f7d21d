use asynctasq_core::{Task, TaskContext, TaskError, task};

#[task]
async fn plain(n: u64) {
    let _ = n;
}

#[task(name = "emails.send", queue = "emails", max_attempts = 5, timeout = "30s", lease = "2m")]
pub async fn send_email(ctx: TaskContext, to: String, subject: String) -> Result<(), TaskError> {
    let _ = (ctx.attempt(), to, subject);
    Ok(())
}

#[task]
async fn io_error(path: String) -> Result<(), std::io::Error> {
    std::fs::metadata(path).map(|_| ())
}

/// A parameter silenced with `_` keeps its wire name.
#[task]
async fn silenced(_user_id: u64) {}

fn main() {
    let _ = Silenced { user_id: 1 };
    assert_eq!(SendEmail::NAME, "emails.send");
    assert_eq!(Plain::NAME, "plain");
    let o = SendEmail::options();
    assert_eq!(o.queue.as_deref(), Some("emails"));
    assert_eq!(o.max_attempts, Some(5));
    assert_eq!(o.timeout, Some(std::time::Duration::from_secs(30)));
    assert_eq!(o.lease, Some(std::time::Duration::from_secs(120)));
    let _ = IoError { path: "x".into() };
    let _ = SendEmail { to: "a".into(), subject: "b".into() };
}
