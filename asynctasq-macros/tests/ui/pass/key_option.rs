use asynctasq_core::{Task, task};

#[task(key = customer_id)]
async fn export(customer_id: u64, note: String) {
    let _ = (customer_id, note);
}

#[task(key = region)]
async fn by_region(region: String) {
    let _ = region;
}

#[task]
async fn unkeyed(n: u32) {
    let _ = n;
}

fn main() {
    assert_eq!(Export { customer_id: 42, note: "a".into() }.key(), Some("42".to_owned()), "the field as text");
    assert_eq!(ByRegion { region: "eu-1".into() }.key(), Some("eu-1".to_owned()));
    assert_eq!(Unkeyed { n: 1 }.key(), None, "no key unless one is named");
}
