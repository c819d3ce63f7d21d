use asynctasq_core::{Task, TaskContext, TaskError, task};

/// A plain `fn` is a blocking task.
#[task]
fn checksum(data: Vec<u8>) {
    let _ = data.iter().map(|b| u64::from(*b)).sum::<u64>();
}

#[task(blocking, queue = "cpu")]
fn resize(ctx: TaskContext, width: u32) -> Result<(), TaskError> {
    if ctx.is_cancelled() {
        return Err(TaskError::retry("stopped"));
    }
    let _ = width;
    Ok(())
}

fn main() {
    assert_eq!(Checksum::NAME, "checksum");
    assert_eq!(Resize::options().queue.as_deref(), Some("cpu"));
}
