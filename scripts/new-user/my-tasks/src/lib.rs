//! The application's tasks, in a library crate of their own (the layout where the linker would
//! drop them unless the binary names the crate: `tasks_crate!` here, `link_tasks!` there).

use asynctasq::{TaskError, task};

asynctasq::core::tasks_crate!();

/// Welcomes a new user.
#[task(queue = "emails", max_attempts = 5, backoff = "30s")]
pub async fn send_welcome(user_id: u64) -> Result<(), TaskError> {
    println!("welcome, user {user_id}");
    Ok(())
}

pub mod cpu;

#[cfg(test)]
mod tests {
    use super::*;
    use asynctasq::core::testing::Jobs;
    use asynctasq::core::{assert_enqueued, refute_enqueued};

    #[tokio::test]
    async fn dispatching_a_welcome_enqueues_it_and_it_runs() {
        let jobs = Jobs::new();
        jobs.client().dispatch(SendWelcome { user_id: 42 }).await.expect("dispatch");
        assert_enqueued!(jobs, SendWelcome { user_id: 42 }, queue = "emails");
        refute_enqueued!(jobs, SendWelcome { user_id: 7 });
        let report = jobs.drain("emails").await.expect("drain");
        assert_eq!(report.succeeded, 1);
    }
}
