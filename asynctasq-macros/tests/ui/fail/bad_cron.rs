#[asynctasq_core::task(cron = "61 * * * *")]
async fn bad_pattern() {}

#[asynctasq_core::task(cron = "0 3 * * *")]
async fn with_arguments(user: u64) {
    let _ = user;
}

#[asynctasq_core::task(cron = "0 3 * * *", catch_up = "some")]
async fn bad_catch_up() {}

#[asynctasq_core::task(tz = "Europe/Berlin")]
async fn zone_without_cron() {}

fn main() {}
