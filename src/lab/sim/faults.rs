//! From fault specs to a concrete, seeded timeline of effects. Pure: the same scenario and seed give
//! the same timeline, so every strategy is compared under exactly the same faults.

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::scenario::{FaultKind, FaultSpec, GithubScope, Scenario, Targets, When};

/// Virtual seconds since the start of the simulation.
pub type T = u64;

/// One change to the world.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// The validator's process stops (nests: several faults may hold it down); connections are
    /// refused until [`Effect::Up`].
    Down(u16),
    /// The network drops everything to and from it (nests); calls time out until [`Effect::Heal`].
    Partition(u16),
    Heal(u16),
    /// The validator process restarts: its in-memory evaluation cache is lost.
    Crash(u16),
    Up(u16),
    /// Its store file is deleted (restart without a persistent volume).
    WipeStore(u16),
    CorruptStart(u16),
    CorruptEnd(u16),
    /// GitHub fails for `scope` until the matching end (nests).
    GithubStart {
        scope: GithubScope,
        rate_limit: Option<u64>,
    },
    GithubEnd {
        scope: GithubScope,
        rate_limit: Option<u64>,
    },
    PatRevoked,
    PatRotated,
}

/// An effect at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: T,
    pub effect: Effect,
}

fn is_global(k: &FaultKind) -> bool {
    matches!(
        k,
        FaultKind::GithubOutage { .. }
            | FaultKind::GithubRateLimit { .. }
            | FaultKind::PatRevoked
            | FaultKind::PatRotated
    )
}

fn arrivals(when: &When, start: T, end: T, rng: &mut ChaCha8Rng) -> Vec<T> {
    match when {
        When::At(list) => list.iter().map(|d| d.as_secs()).filter(|t| *t >= start && *t < end).collect(),
        When::Every(d) => {
            let step = d.as_secs().max(1);
            (1..).map(|k| start + k * step).take_while(|t| *t < end).collect()
        }
        When::Rate(per_day) => {
            if *per_day <= 0.0 {
                return Vec::new();
            }
            let mean = 86_400.0 / per_day;
            let mut out = Vec::new();
            let mut t = start as f64;
            loop {
                // exponential inter-arrival time
                let u: f64 = rng.r#gen::<f64>().max(f64::MIN_POSITIVE);
                t += -u.ln() * mean;
                if t >= end as f64 {
                    break out;
                }
                out.push(t as T);
            }
        }
    }
}

fn targets(t: &Targets, n: u16, rng: &mut ChaCha8Rng) -> Vec<u16> {
    let mut all: Vec<u16> = (0..n).collect();
    match t {
        Targets::All => all,
        Targets::List(v) => v.clone(),
        Targets::Random(k) => {
            all.shuffle(rng);
            all.truncate(*k as usize);
            all.sort_unstable();
            all
        }
        Targets::Fraction(f) => {
            all.shuffle(rng);
            all.truncate((f * f64::from(n)).round() as usize);
            all.sort_unstable();
            all
        }
    }
}

fn effects(spec: &FaultSpec, v: Option<u16>, at: T, downtime: T, out: &mut Vec<Event>) {
    // Restarts of this fault may draw their own downtime (see `timeline`).
    let d = spec.duration.as_secs();
    let mut push = |at: T, effect: Effect| out.push(Event { at, effect });
    match (&spec.kind, v) {
        (FaultKind::RestartEmptyStore, Some(v)) => {
            push(at, Effect::Down(v));
            push(at, Effect::Crash(v));
            push(at, Effect::WipeStore(v));
            push(at + downtime, Effect::Up(v));
        }
        (FaultKind::Restart, Some(v)) => {
            push(at, Effect::Down(v));
            push(at, Effect::Crash(v));
            push(at + downtime, Effect::Up(v));
        }
        (FaultKind::CrashLoop { period }, Some(v)) => {
            let p = period.as_secs().max(downtime + 1);
            let mut t = at;
            while t < at + d {
                push(t, Effect::Down(v));
                push(t, Effect::Crash(v));
                push(t + downtime, Effect::Up(v));
                t += p;
            }
        }
        (FaultKind::Unreachable, Some(v)) => {
            push(at, Effect::Partition(v));
            push(at + d, Effect::Heal(v));
        }
        (FaultKind::StoreLoss, Some(v)) => push(at, Effect::WipeStore(v)),
        (FaultKind::CorruptStore, Some(v)) => {
            push(at, Effect::CorruptStart(v));
            push(at + d, Effect::CorruptEnd(v));
        }
        (FaultKind::GithubOutage { scope }, None) => {
            push(at, Effect::GithubStart { scope: *scope, rate_limit: None });
            push(at + d, Effect::GithubEnd { scope: *scope, rate_limit: None });
        }
        (FaultKind::GithubRateLimit { scope, retry_after }, None) => {
            let r = Some(retry_after.as_secs());
            push(at, Effect::GithubStart { scope: *scope, rate_limit: r });
            push(at + d, Effect::GithubEnd { scope: *scope, rate_limit: r });
        }
        (FaultKind::PatRevoked, None) => push(at, Effect::PatRevoked),
        (FaultKind::PatRotated, None) => push(at, Effect::PatRotated),
        _ => {}
    }
}

/// The scenario's faults as a time-sorted list of effects (stable order for equal times).
pub fn timeline(s: &Scenario, rng: &mut ChaCha8Rng) -> Vec<Event> {
    let mut out = Vec::new();
    let downtime = s.restart_downtime.as_secs();
    for spec in &s.faults {
        let (start, end) = (spec.start.as_secs(), spec.end.as_secs());
        if is_global(&spec.kind) {
            for at in arrivals(&spec.when, start, end, rng) {
                effects(spec, None, at, downtime, &mut out);
            }
        } else {
            for v in targets(&spec.targets, s.validators, rng) {
                for at in arrivals(&spec.when, start, end, rng) {
                    let downtime = match spec.downtime {
                        Some((lo, hi)) => rng.gen_range(lo.as_secs()..=hi.as_secs()),
                        None => downtime,
                    };
                    effects(spec, Some(v), at, downtime, &mut out);
                }
            }
        }
    }
    out.sort_by_key(|e| e.at);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn scenario(faults: &str) -> Scenario {
        Scenario::parse(
            "t",
            &format!("duration = \"10d\"\n[subnet]\nvalidators = 5\n{faults}\n[[strategy]]\nkind = \"post_once\""),
        )
        .unwrap()
    }

    #[test]
    fn deterministic_and_sorted() {
        let s = scenario(
            "[[fault]]\nkind = \"restart_empty_store\"\nrate_per_day = 1.0\n[[fault]]\nkind = \"github_outage\"\nevery = \"2d\"\nduration = \"1h\"",
        );
        let a = timeline(&s, &mut ChaCha8Rng::seed_from_u64(3));
        let b = timeline(&s, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
        // ~1 restart/day/validator over 10 days, 5 validators: ~50 wipes
        let wipes = a.iter().filter(|e| matches!(e.effect, Effect::WipeStore(_))).count();
        assert!((25..=80).contains(&wipes), "{wipes}");
        // every 2 days within 10 days: 4 outages (2d, 4d, 6d, 8d)
        assert_eq!(a.iter().filter(|e| matches!(e.effect, Effect::GithubStart { .. })).count(), 4);
        let c = timeline(&s, &mut ChaCha8Rng::seed_from_u64(4));
        assert_ne!(a, c);
    }

    #[test]
    fn windows_pair_up() {
        let s = scenario(
            "[[fault]]\nkind = \"crash_loop\"\nvalidators = [1]\nat = [\"1d\"]\nduration = \"1h\"\nperiod = \"10m\"",
        );
        let t = timeline(&s, &mut ChaCha8Rng::seed_from_u64(1));
        let downs = t.iter().filter(|e| e.effect == Effect::Down(1)).count();
        let ups = t.iter().filter(|e| e.effect == Effect::Up(1)).count();
        assert_eq!((downs, ups), (6, 6));
    }
}
