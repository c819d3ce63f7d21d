//! Keeping secrets out of logs, errors and pages: URLs are shown with their password hidden.

/// The URL with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') { format!("{scheme}://{user}:***@{host}{tail}") } else { format!("{scheme}://{user}@{host}{tail}") }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_urls_never_show_passwords() {
        assert_eq!(redact_url("postgres://u:s3cret@127.0.0.1:5432/db"), "postgres://u:***@127.0.0.1:5432/db");
        assert_eq!(redact_url("redis://:pw@127.0.0.1/0?x=1"), "redis://:***@127.0.0.1/0?x=1");
        assert_eq!(redact_url("amqp://guest@h/%2f"), "amqp://guest@h/%2f");
        assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
        assert!(!redact_url("mysql://root:p@ss:w@rd@127.0.0.1/t").contains("ss:w"));
    }
}
