//! Fixtures on patrol's state file instead of waiting on the wall clock: the times it recorded are
//! moved back, as if the clock had run on (a backoff over, a validator due, a preflight old).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::cli::Scratch;
use super::python::DENDRITE_HOTKEY;

/// The state file of the test miner ([`DENDRITE_HOTKEY`], netuid 74) under `state_dir` of `s`.
pub fn path(s: &Scratch, state_dir: &str) -> PathBuf {
    s.path(&format!("{state_dir}/state-{DENDRITE_HOTKEY}-74.json"))
}

/// The state file as JSON.
pub fn read(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Unix seconds, as the state file records them.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Whether a JSON number is a time the state recorded: unix seconds after 2001 (no count, budget
/// or fingerprint in the file comes near 10^9).
fn is_time(n: i64) -> bool {
    (1_000_000_000..10_000_000_000).contains(&n)
}

fn shift(v: &mut Value, secs: i64, moved: &mut usize) {
    match v {
        Value::Number(n) => {
            if let Some(t) = n.as_i64().filter(|t| is_time(*t)) {
                *v = Value::from(t - secs);
                *moved += 1;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|x| shift(x, secs, moved)),
        Value::Object(map) => map.values_mut().for_each(|x| shift(x, secs, moved)),
        _ => {}
    }
}

/// `secs` pass for the state file at `path`: every time in it moves back by `secs` (its backoffs,
/// timers, spacing, preflight, budget window and notification record alike), and the next run
/// sees it as if it ran `secs` later.
pub fn pass_time(path: &Path, secs: i64) {
    let mut state = read(path);
    let mut moved = 0;
    shift(&mut state, secs, &mut moved);
    assert!(moved > 0, "no time in {}: {state}", path.display());
    std::fs::write(path, serde_json::to_vec(&state).unwrap()).unwrap();
}

/// When validator `uid` may be contacted *and* sent the PAT again by a one-shot run: past its
/// `next_check_at` and `not_before` (the backoff) and past the spacing rule (`spacing` seconds
/// after its last broadcast).
pub fn due_at(state: &Value, uid: u16, spacing: i64) -> i64 {
    let h = &state["validators"][uid.to_string()];
    assert!(h.is_object(), "no history of uid {uid} in the state: {state}");
    let at = |k: &str| h[k].as_i64().unwrap_or(0);
    let spaced = h["last_broadcast_at"].as_i64().map_or(0, |t| t + spacing);
    at("next_check_at").max(at("not_before")).max(spaced)
}

/// Move the state at `path` on until validator `uid` is due (see [`due_at`]) and one second more
/// (passes compare whole seconds); how far it moved. `at_most` bounds the move, so a test still
/// notices a backoff far longer than its config says.
pub fn make_due(path: &Path, uid: u16, spacing: i64, at_most: i64) -> i64 {
    let left = due_at(&read(path), uid, spacing) + 1 - now();
    assert!(left <= at_most, "uid {uid} is due in {left} s: more than the {at_most} s this test allows");
    if left > 0 {
        pass_time(path, left);
    }
    left.max(0)
}
