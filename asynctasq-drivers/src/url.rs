//! A backend's settings in its URL's query string: `postgres://…/app?table_prefix=jobs&migrate=false`.
//!
//! Each `<Backend>Config::from_url` takes the options it knows out of the query, leaves the
//! options of the backend's own client (PostgreSQL's `sslmode`, AMQP's `heartbeat`, …) in the
//! URL it hands on, and refuses any other option by name: a misspelt option must not be
//! silently ignored.

// Which readers a build uses depends on the backend features it has.
#![allow(dead_code)]

use std::time::Duration;

use asynctasq_core::DriverError;

/// The query of a URL, its options taken one by one.
pub(crate) struct Query {
    backend: &'static str,
    base: String,
    pairs: Vec<(String, String, bool)>,
}

impl Query {
    /// Splits `url` into the part before `?` and its `key=value` pairs (values percent-decoded).
    pub(crate) fn parse(backend: &'static str, url: &str) -> Self {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let pairs = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned(), false)
            })
            .collect();
        Self { backend, base: base.to_owned(), pairs }
    }

    /// The URL without its query.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Takes option `key` (the last one, if repeated), percent-decoded.
    pub(crate) fn take(&mut self, key: &str) -> Option<String> {
        let mut found = None;
        for (k, v, taken) in &mut self.pairs {
            if k == key {
                *taken = true;
                found = Some(decode(v));
            }
        }
        found
    }

    fn bad(&self, key: &str, value: &str, expected: &str) -> DriverError {
        let shown = asynctasq_core::envelope::excerpt(value);
        DriverError::Config(format!("{} URL option `{key}={shown}` is not {expected}", self.backend))
    }

    /// Takes option `key` as a number.
    pub(crate) fn number<T: std::str::FromStr>(&mut self, key: &str) -> Result<Option<T>, DriverError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| self.bad(key, &v, "a whole number")),
        }
    }

    /// Takes option `key` as `true`/`false` (also `1`/`0`, `yes`/`no`).
    pub(crate) fn flag(&mut self, key: &str) -> Result<Option<bool>, DriverError> {
        match self.take(key).as_deref() {
            None => Ok(None),
            Some("true" | "1" | "yes") => Ok(Some(true)),
            Some("false" | "0" | "no") => Ok(Some(false)),
            Some(v) => Err(self.bad(key, v, "true or false")),
        }
    }

    /// Takes option `key` as a duration: `500ms`, `5s`, `2m`, `1h`, or a number of seconds.
    pub(crate) fn duration(&mut self, key: &str) -> Result<Option<Duration>, DriverError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => parse_duration(&v).map(Some).ok_or_else(|| self.bad(key, &v, "a duration such as 500ms, 5s, 2m or 1h")),
        }
    }

    /// Takes option `key` into `field` when the URL sets it.
    #[cfg_attr(
        not(any(feature = "redis", feature = "rabbitmq", feature = "sqs", feature = "postgres", feature = "mysql")),
        allow(dead_code)
    )]
    pub(crate) fn set_string(&mut self, key: &str, field: &mut String) {
        if let Some(v) = self.take(key) {
            *field = v;
        }
    }

    /// Takes option `key` as a number into `field` when the URL sets it.
    pub(crate) fn set_number<T: std::str::FromStr>(&mut self, key: &str, field: &mut T) -> Result<(), DriverError> {
        if let Some(v) = self.number(key)? {
            *field = v;
        }
        Ok(())
    }

    /// Takes option `key` as a flag into `field` when the URL sets it.
    pub(crate) fn set_flag(&mut self, key: &str, field: &mut bool) -> Result<(), DriverError> {
        if let Some(v) = self.flag(key)? {
            *field = v;
        }
        Ok(())
    }

    /// Takes option `key` as a duration into `field` when the URL sets it.
    pub(crate) fn set_duration(&mut self, key: &str, field: &mut Duration) -> Result<(), DriverError> {
        if let Some(v) = self.duration(key)? {
            *field = v;
        }
        Ok(())
    }

    /// Ends the parse: any option neither taken nor in `native` (options of the backend's own
    /// client, kept in the URL) is an error naming it. Returns the URL with the native options.
    pub(crate) fn finish(self, ours: &[&str], native: &[&str]) -> Result<String, DriverError> {
        let unknown: Vec<&str> =
            self.pairs.iter().filter(|(k, _, taken)| !taken && !native.contains(&k.as_str())).map(|(k, ..)| k.as_str()).collect();
        if !unknown.is_empty() {
            let known = ours.iter().chain(native).copied().collect::<Vec<_>>().join(", ");
            return Err(DriverError::Config(format!(
                "unknown {} URL option{} {}; known: {known}",
                self.backend,
                if unknown.len() == 1 { "" } else { "s" },
                unknown.iter().map(|k| format!("`{}`", asynctasq_core::envelope::excerpt(k))).collect::<Vec<_>>().join(", ")
            )));
        }
        let kept: Vec<String> = self.pairs.iter().filter(|(_, _, taken)| !taken).map(|(k, v, _)| format!("{k}={v}")).collect();
        Ok(if kept.is_empty() { self.base } else { format!("{}?{}", self.base, kept.join("&")) })
    }
}

/// `%XX` escapes and `+` as space.
fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `500ms`, `5s`, `2m`, `1h`, or plain seconds.
fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_taken_native_ones_kept_and_unknown_ones_named() {
        let mut q = Query::parse("PostgreSQL", "postgres://u:p@h/db?table_prefix=jobs&sslmode=require&migrate=false&poll_interval=250ms");
        assert_eq!(q.take("table_prefix").as_deref(), Some("jobs"));
        assert_eq!(q.flag("migrate").expect("a flag"), Some(false));
        assert_eq!(q.duration("poll_interval").expect("a duration"), Some(Duration::from_millis(250)));
        assert_eq!(q.finish(&["table_prefix"], &["sslmode"]).expect("all known"), "postgres://u:p@h/db?sslmode=require");

        let q = Query::parse("Redis", "redis://h?prefx=a&also=b");
        let err = q.finish(&["prefix"], &[]).expect_err("unknown options").to_string();
        assert!(err.contains("`prefx`") && err.contains("`also`") && err.contains("known: prefix"), "{err}");
    }

    #[test]
    fn malformed_values_are_named() {
        let mut q = Query::parse("MySQL", "mysql://h?max_connections=many&migrate=maybe&request_timeout=soon");
        assert!(q.number::<u32>("max_connections").expect_err("not a number").to_string().contains("max_connections=many"));
        assert!(q.flag("migrate").is_err());
        assert!(q.duration("request_timeout").is_err());
    }

    #[test]
    fn values_are_percent_decoded() {
        let mut q = Query::parse("SQS", "sqs://us-east-1?endpoint=http%3A%2F%2F127.0.0.1%3A4566&x=a+b");
        assert_eq!(q.take("endpoint").as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(q.take("x").as_deref(), Some("a b"));
        assert_eq!(decode("100%"), "100%");
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("7d"), None);
    }
}
