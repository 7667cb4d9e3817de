//! `sim::scenario::Scenario::parse` (the `patrol simulate` scenario TOML) on arbitrary text: never
//! panics and is deterministic; for a valid scenario of bounded size, `sim::faults::timeline` (the
//! seeded fault timeline) never panics, is sorted by time and is the same for the same seed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use patrol::lab::sim::faults;
use patrol::lab::sim::scenario::{FaultKind, Scenario, Targets, When};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// An upper bound on the timeline's length, or `None` when it could be large (a valid scenario may
/// ask for millions of events; that is not a bug, just not what a fuzz iteration should spend).
fn small(s: &Scenario) -> Option<u64> {
    let days = s.duration.as_secs() / 86_400 + 1;
    let mut total = 0u64;
    for f in &s.faults {
        let span = f.end.as_secs().saturating_sub(f.start.as_secs());
        let arrivals = match &f.when {
            When::At(v) => v.len() as u64,
            When::Every(d) => span / d.as_secs().max(1) + 1,
            When::Rate(r) if r.is_finite() && *r <= 1000.0 => (r * (span as f64 / 86_400.0 + 1.0) * 4.0) as u64 + 16,
            When::Rate(_) => return None,
        };
        let per_arrival = match &f.kind {
            FaultKind::CrashLoop { period } => f.duration.as_secs() / period.as_secs().max(1) * 2 + 4,
            _ => 4,
        };
        let targets = match &f.targets {
            Targets::List(v) => v.len() as u64,
            _ => u64::from(s.validators),
        };
        total = total.saturating_add(arrivals.saturating_mul(per_arrival).saturating_mul(targets.max(1)));
    }
    (days <= 3650 && total <= 50_000).then_some(total)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let first = Scenario::parse("fuzz.toml", text);
    let second = Scenario::parse("fuzz.toml", text);
    let s = match (first, second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
            a
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string());
            return;
        }
        _ => panic!("scenario parsing is not deterministic"),
    };
    assert_eq!(s.stakes.len(), usize::from(s.validators));
    assert!(s.stakes.iter().all(|x| x.is_finite() && *x > 0.0));
    if small(&s).is_some() {
        let a = faults::timeline(&s, &mut ChaCha8Rng::seed_from_u64(s.seed));
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at), "timeline not sorted");
        let b = faults::timeline(&s, &mut ChaCha8Rng::seed_from_u64(s.seed));
        assert_eq!(a, b, "timeline not deterministic");
    }
});
