//! Keeping secrets out of logs, errors and pages: URLs are shown with their password hidden.

/// The URL with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    // A URL in the query (PostgreSQL's `listen_url`, percent-encoded) is redacted too.
    if let Some((base, query)) = url.split_once('?') {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if decode(v).contains("://") => format!("{k}={}", encode(&redact_url(&decode(v)))),
                _ => pair.to_owned(),
            })
            .collect();
        return format!("{}?{}", redact_url(base), pairs.join("&"));
    }
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

/// `v` percent-decoded (a malformed escape is kept as it is).
fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `v` percent-encoded for a query value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~*".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
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
        let nested = redact_url("postgres://u:pw1@pooler/db?pgbouncer=true&listen_url=postgres%3A%2F%2Fu%3Apw2%40server%2Fdb");
        assert!(!nested.contains("pw1") && !nested.contains("pw2"), "{nested}");
        assert!(nested.contains("pgbouncer=true") && nested.contains("server"), "{nested}");
    }
}
