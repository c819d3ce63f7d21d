//! Property tests of the two decoders that read untrusted input: `Envelope::decode` (bytes from
//! a backend's storage) and a task's `args_from_json` (the shell's `--args`). Neither may panic
//! on any input; what they accept must round-trip. Bounded (a few thousand cases) so CI runs
//! them in seconds.

use std::collections::BTreeMap;

use asynctasq_core::envelope::ENVELOPE_VERSION;
use asynctasq_core::{Defaulted, Envelope, TaskId, TaskRegistration, task};
use proptest::prelude::*;

/// A task with arguments of several shapes.
#[task]
async fn shaped(n: u64, name: String, flag: Option<bool>, values: Vec<i32>) {
    let _ = (n, name, flag, values);
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        any::<[u8; 16]>(),
        ".{0,40}",
        "[a-z]{1,20}",
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<u32>(),
        any::<u32>(),
        proptest::option::of(any::<u64>()),
        any::<u64>(),
        (any::<u64>(), any::<u64>(), any::<bool>()),
        proptest::collection::btree_map(".{0,10}", ".{0,10}", 0..4),
    )
        .prop_map(
            |(id, name, queue, payload, attempt, max_attempts, timeout_ms, lease_ms, (created_at, not_before, defaulted), headers)| {
                Envelope {
                    version: ENVELOPE_VERSION,
                    id: TaskId::from_bytes(id),
                    name,
                    queue,
                    payload,
                    attempt,
                    max_attempts,
                    timeout_ms,
                    lease_ms,
                    created_at,
                    not_before,
                    headers: headers.into_iter().collect::<BTreeMap<_, _>>(),
                    defaulted: if defaulted { Defaulted::ATTEMPTS | Defaulted::LEASE } else { Defaulted::default() },
                    unique: None,
                    key: None,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Envelope::decode(&bytes);
    }

    #[test]
    fn every_envelope_round_trips(e in envelope()) {
        prop_assert_eq!(Envelope::decode(&e.encode().expect("encodes")).expect("decodes"), e);
    }

    #[test]
    fn a_truncated_envelope_is_an_error(e in envelope(), cut in any::<prop::sample::Index>()) {
        let bytes = e.encode().expect("encodes");
        let cut = cut.index(bytes.len());
        prop_assert!(Envelope::decode(&bytes[..cut]).is_err(), "{} of {} bytes decoded", cut, bytes.len());
    }

    #[test]
    fn a_corrupted_envelope_never_panics(e in envelope(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = e.encode().expect("encodes");
        let at = at.index(bytes.len());
        bytes[at] = byte;
        let _ = Envelope::decode(&bytes);
    }

    #[test]
    fn args_from_json_never_panics_on_any_text(text in ".{0,200}") {
        let _ = (TaskRegistration::of::<Shaped>().args_from_json)(&text);
    }

    #[test]
    fn args_from_json_accepts_what_fits_the_type_and_round_trips(
        n in any::<u64>(), name in ".{0,30}", flag in proptest::option::of(any::<bool>()), values in proptest::collection::vec(any::<i32>(), 0..8)
    ) {
        let json = serde_json::json!({ "n": n, "name": name, "flag": flag, "values": values }).to_string();
        let payload = (TaskRegistration::of::<Shaped>().args_from_json)(&json).expect("fits the type");
        let back: Shaped = rmp_serde::from_slice(&payload).expect("a payload the task decodes");
        prop_assert_eq!((back.n, back.name, back.flag, back.values), (n, name, flag, values));
    }

    #[test]
    fn args_from_json_names_what_does_not_fit(n in any::<i64>().prop_filter("negative", |n| *n < 0)) {
        let json = serde_json::json!({ "n": n, "name": "x", "values": [] }).to_string();
        let err = (TaskRegistration::of::<Shaped>().args_from_json)(&json).expect_err("a negative n does not fit u64");
        prop_assert!(err.contains("invalid value") || err.contains("expected u64"), "{}", err);
    }
}
