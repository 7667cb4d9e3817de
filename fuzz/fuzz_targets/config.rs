//! `config::Settings::build` (the TOML config file → validated settings) on arbitrary text, with no
//! environment and no command-line overrides: never panics, and is deterministic (the same text
//! gives the same settings or the same error).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use patrol::config::{Overrides, Settings};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = Path::new("/etc/patrol/config.toml");
    let build = || Settings::build(Some(file), Some(text), &Overrides::default(), |_| None);
    let first = build();
    let second = build();
    match (&first, &second) {
        (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
        (Err(a), Err(b)) => {
            let (a, b) = (a.to_string(), b.to_string());
            assert_eq!(a, b);
            assert!(!a.is_empty());
        }
        _ => panic!("config parsing is not deterministic"),
    }
    if let Ok(s) = first {
        // What commands do next with a valid config must not panic either.
        let _ = s.single_miner();
        let _ = s.origin();
    }
});
