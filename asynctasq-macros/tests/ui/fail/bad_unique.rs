#[asynctasq_core::task(unique(by = [customer]))]
async fn unknown_field(user: u64) {
    let _ = user;
}

#[asynctasq_core::task(unique(until = "finish"))]
async fn unknown_until(user: u64) {
    let _ = user;
}

#[asynctasq_core::task(unique(mode = "merge"))]
async fn unknown_mode(user: u64) {
    let _ = user;
}

#[asynctasq_core::task(unique(ttl = "0s"))]
async fn zero_ttl(user: u64) {
    let _ = user;
}

#[asynctasq_core::task(unique(per = "user"))]
async fn unknown_option(user: u64) {
    let _ = user;
}

fn main() {}
