//! What the README's tour marks `// placeholder`: the user's own code, here as small stand-ins
//! that do what the tour's text says of them.

use std::time::Duration;

use asynctasq::{Client, TaskError, task};

/// The mailer `send_welcome` calls.
pub async fn smtp_send(address: &str) -> Result<(), std::io::Error> {
    if address.contains('@') { Ok(()) } else { Err(std::io::Error::other(format!("bad address {address}"))) }
}

/// The tiles `make_thumbnail` renders.
pub fn tiles(path: &str) -> Result<Vec<u32>, std::io::Error> {
    Ok((0..path.len() as u32).collect())
}

/// Renders one tile.
pub fn render(tile: u32) -> Result<(), std::io::Error> {
    std::hint::black_box(tile);
    Ok(())
}

/// A reminder a day after signing up.
#[task(queue = "emails")]
pub async fn send_reminder(user_id: u64) -> Result<(), TaskError> {
    std::hint::black_box(user_id);
    Ok(())
}

/// The application's sign-up: it dispatches a welcome now and a reminder in a day.
pub async fn sign_up(client: &Client, user_id: u64) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    client.dispatch(crate::SendWelcome { user_id, address: format!("user{user_id}@example.com") }).await?;
    client.dispatch(SendReminder { user_id }).delay(Duration::from_secs(86_400)).await?;
    Ok(())
}
