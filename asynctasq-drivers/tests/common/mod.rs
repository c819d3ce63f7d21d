//! What the driver test files share: names of a test's own and the servers' addresses.

/// A random suffix for names of a test's own.
#[allow(dead_code)]
pub(crate) fn own() -> String {
    format!("{:08x}", fastrand::u32(..))
}

/// `$var`, or `default` when it is not set (the `ASYNCTASQ_TEST_*` server addresses).
#[allow(dead_code)]
pub(crate) fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.into())
}
