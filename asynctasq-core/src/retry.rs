//! Retry policies: how long to wait before the next attempt.

use std::time::Duration;

/// How long a failed task waits before its next attempt.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RetryPolicy {
    /// `base * 2^(attempt-1)`, capped at `max`, with "equal jitter": the delay is drawn
    /// uniformly from `[d/2, d]`, so a burst of failures does not retry in lockstep while no
    /// retry comes sooner than half its nominal delay.
    Exponential {
        /// Delay after the first failed attempt.
        base: Duration,
        /// Upper bound on any delay.
        max: Duration,
        /// Whether to apply jitter.
        jitter: bool,
    },
    /// The same delay after every failure.
    Fixed(Duration),
}

impl Default for RetryPolicy {
    /// Exponential from 1 s, capped at 1 h, with jitter.
    fn default() -> Self {
        Self::Exponential { base: Duration::from_secs(1), max: Duration::from_secs(3600), jitter: true }
    }
}

impl RetryPolicy {
    /// An exponential policy with jitter.
    pub fn exponential(base: Duration, max: Duration) -> Self {
        Self::Exponential { base, max, jitter: true }
    }

    /// The delay after the failure of delivery number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        match *self {
            Self::Fixed(d) => d,
            Self::Exponential { base, max, jitter } => {
                let exp = attempt.saturating_sub(1).min(63);
                let nominal = base.checked_mul(1u32 << exp.min(31)).unwrap_or(max).min(max);
                let nominal = if exp > 31 { max } else { nominal };
                if jitter {
                    let half = nominal / 2;
                    let spread = millis_u64(nominal - half);
                    half + Duration::from_millis(if spread == 0 { 0 } else { fastrand::u64(0..=spread) })
                } else {
                    nominal
                }
            }
        }
    }
}

/// The reserved header a per-dispatch retry policy travels in (see [`RetryPolicy::to_header`]).
pub const RETRY_HEADER: &str = "asynctasq-retry";

impl RetryPolicy {
    /// The policy as a header value: `fixed:MS` or `exponential:BASE_MS:CAP_MS:JITTER` (jitter
    /// `1` or `0`). Headers travel through every backend unchanged, so a policy chosen at
    /// dispatch reaches whichever worker runs the task.
    pub fn to_header(&self) -> String {
        match self {
            Self::Fixed(d) => format!("fixed:{}", millis_u64(*d)),
            Self::Exponential { base, max, jitter } => {
                format!("exponential:{}:{}:{}", millis_u64(*base), millis_u64(*max), u8::from(*jitter))
            }
        }
    }

    /// Reads a policy written by [`RetryPolicy::to_header`]; `None` when it is not one.
    pub fn from_header(value: &str) -> Option<Self> {
        let parts: Vec<&str> = value.split(':').collect();
        let ms = |s: &str| s.parse::<u64>().ok().map(Duration::from_millis);
        match parts.as_slice() {
            ["fixed", d] => Some(Self::Fixed(ms(d)?)),
            ["exponential", base, max, jitter] => {
                let jitter = match *jitter {
                    "1" => true,
                    "0" => false,
                    _ => return None,
                };
                Some(Self::Exponential { base: ms(base)?, max: ms(max)?, jitter })
            }
            _ => None,
        }
    }
}

fn millis_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_doubles_until_the_cap() {
        let p = RetryPolicy::Exponential { base: Duration::from_millis(100), max: Duration::from_secs(1), jitter: false };
        let delays: Vec<u64> = (1..=6).map(|a| p.delay(a).as_millis() as u64).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_between_half_and_the_nominal_delay() {
        let p = RetryPolicy::exponential(Duration::from_millis(100), Duration::from_secs(100));
        for attempt in 1..=8 {
            let nominal = 100u64 << (attempt - 1);
            let mut seen = std::collections::HashSet::new();
            for _ in 0..200 {
                let d = p.delay(attempt).as_millis() as u64;
                assert!(d >= nominal / 2 && d <= nominal, "attempt {attempt}: {d} outside [{}, {nominal}]", nominal / 2);
                seen.insert(d);
            }
            assert!(seen.len() > 1, "jitter must vary the delay");
        }
    }

    #[test]
    fn a_policy_survives_its_header() {
        for p in [
            RetryPolicy::Fixed(Duration::from_millis(250)),
            RetryPolicy::default(),
            RetryPolicy::Exponential { base: Duration::from_secs(30), max: Duration::from_secs(3600), jitter: false },
        ] {
            assert_eq!(RetryPolicy::from_header(&p.to_header()), Some(p.clone()), "{}", p.to_header());
        }
        for bad in ["", "fixed", "fixed:x", "exponential:1:2", "exponential:1:2:yes", "linear:5"] {
            assert_eq!(RetryPolicy::from_header(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn fixed_is_constant() {
        let p = RetryPolicy::Fixed(Duration::from_millis(250));
        assert!((1..10).all(|a| p.delay(a) == Duration::from_millis(250)));
    }
}
