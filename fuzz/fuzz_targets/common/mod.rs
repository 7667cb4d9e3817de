//! Shared by the fuzz targets: a scratch directory and float-aware JSON comparison.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{LazyLock, OnceLock};

use serde_json::Value;

/// One scratch directory per fuzzing process, on tmpfs when there is one (the code under test
/// fsyncs every write), emptied by [`scratch`] before each input.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR
        .get_or_init(|| {
            let shm = Path::new("/dev/shm");
            if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("scratch dir")
        })
        .path();
    for e in std::fs::read_dir(dir).expect("read scratch dir").flatten() {
        let p = e.path();
        if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) }.expect("clear scratch dir");
    }
    dir
}

/// Whether serde_json, as built into patrol, parses back every float it writes. Without its
/// `float_roundtrip` feature it does not: its fast float parser may be off by an ulp or two
/// (`-1.5e-30` reads as `-1.5000000000000001e-30`, which is written as such and reads back as
/// `-1.5e-30`). Until patrol enables that feature, floats are compared to within a few ulps.
pub static FLOATS_ROUND_TRIP: LazyLock<bool> = LazyLock::new(|| {
    let x: f64 = serde_json::from_str("-1.5e-30").unwrap();
    let y: f64 = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
    x.to_bits() == y.to_bits()
});

/// `a == b`, or within the imprecision of serde_json's fast float parser when it is in use.
pub fn f64_eq(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits()
        || a == b
        || (!*FLOATS_ROUND_TRIP && (a - b).abs() <= 8.0 * f64::EPSILON * a.abs().max(b.abs()))
}

/// JSON equality with [`f64_eq`] for floats (and key order ignored, as `Value`'s `==` does).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            _ if x == y => true,
            (Some(p), Some(q)) if x.is_f64() || y.is_f64() => f64_eq(p, q),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, p)| y.get(k).is_some_and(|q| json_eq(p, q)))
        }
        _ => a == b,
    }
}
