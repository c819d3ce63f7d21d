//! Prints the events workers publish on a Redis pub/sub channel, one line each: run workers
//! with `--events-redis-url redis://127.0.0.1:6379` (any backend; `--publish-events` when the
//! backend is Redis itself), then
//!
//! ```sh
//! cargo run -p asynctasq-examples --example events -- redis://127.0.0.1:6379 asynctasq:events
//! ```
//!
//! Each message is one [`asynctasq_core::Event`] as MessagePack with named fields, tagged by
//! `event` (`worker_started`, `worker_heartbeat`, `worker_stopped`, `task_enqueued`,
//! `task_started`, `task_succeeded`, `task_retry_scheduled`, `task_dead_lettered`,
//! `task_released`, `lease_lost`); README "Events" has the fields.

use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let channel = args.next().unwrap_or_else(|| "asynctasq:events".into());
    let client = redis::Client::open(url.as_str())?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&channel).await?;
    eprintln!("listening on {channel}");
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        match rmp_serde::from_slice::<asynctasq_core::Event>(message.get_payload_bytes()) {
            // JSON, so the line shows every field by name.
            Ok(event) => println!("{}", serde_json::to_string(&event)?),
            Err(e) => eprintln!("not an asynctasq event ({e})"),
        }
    }
    Ok(())
}
