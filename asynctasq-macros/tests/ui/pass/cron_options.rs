use asynctasq_core::{TaskContext, TaskRegistration, task};

#[task(cron = "0 3 * * *")]
async fn nightly() {}

#[task(cron = "*/10 * * * * *", tz = "Europe/Berlin", catch_up = "all:5")]
async fn every_ten_seconds(ctx: TaskContext) {
    let _ = ctx;
}

fn main() {
    let nightly = asynctasq_core::__private::inventory::iter::<TaskRegistration>.into_iter().find(|r| r.name == "nightly").expect("registered");
    let spec = nightly.cron.expect("a schedule");
    assert_eq!((spec.pattern, spec.tz, spec.catch_up), ("0 3 * * *", "UTC", "latest"));
    let fast = asynctasq_core::__private::inventory::iter::<TaskRegistration>
        .into_iter()
        .find(|r| r.name == "every_ten_seconds")
        .expect("registered");
    assert_eq!(fast.cron.map(|c| (c.tz, c.catch_up)), Some(("Europe/Berlin", "all:5")));
}
