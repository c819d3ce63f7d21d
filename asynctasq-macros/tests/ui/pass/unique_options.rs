use std::time::Duration;

use asynctasq_core::{Task, UniqueMode, UniqueUntil, Uniqueness, task};

#[task(unique)]
async fn whole(user: u64, note: String) {
    let _ = (user, note);
}

#[task(unique(by = [user], until = "start", mode = "debounce"))]
async fn by_user(user: u64, note: String) {
    let _ = (user, note);
}

#[task(unique(ttl = "10m"))]
async fn once_per_period(user: u64) {
    let _ = user;
}

#[task(unique(until = "done", ttl = "1h", mode = "replace"))]
async fn bounded(user: u64) {
    let _ = user;
}

fn main() {
    let day = Duration::from_secs(86_400);
    assert_eq!(Whole::options().unique, Some(Uniqueness { until: UniqueUntil::Done, ttl: day, mode: UniqueMode::Skip }));
    assert_eq!(Whole { user: 1, note: "a".into() }.unique_fields().unwrap(), None, "all the arguments");
    assert_eq!(ByUser::options().unique, Some(Uniqueness { until: UniqueUntil::Start, ttl: day, mode: UniqueMode::Debounce }));
    let (a, b) = (ByUser { user: 1, note: "a".into() }, ByUser { user: 1, note: "b".into() });
    assert_eq!(a.unique_fields().unwrap(), b.unique_fields().unwrap(), "only the named fields count");
    assert_ne!(a.unique_fields().unwrap(), ByUser { user: 2, note: "a".into() }.unique_fields().unwrap());
    let ten_minutes = Duration::from_secs(600);
    assert_eq!(OncePerPeriod::options().unique, Some(Uniqueness { until: UniqueUntil::Expiry, ttl: ten_minutes, mode: UniqueMode::Skip }));
    let hour = Duration::from_secs(3600);
    assert_eq!(Bounded::options().unique, Some(Uniqueness { until: UniqueUntil::Done, ttl: hour, mode: UniqueMode::Replace }));
}
