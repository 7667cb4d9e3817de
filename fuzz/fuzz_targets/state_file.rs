//! `reconcile::state::StateFile::load` on arbitrary file contents: it never panics, a file it does
//! not accept is never left in place (moved aside byte for byte), and a state it accepts survives
//! save + load unchanged.
#![no_main]

mod common;

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use patrol::reconcile::state::{MinerState, StateFile};

const HOTKEY: &str = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV";
const NETUID: u16 = 74;

fn clear(dir: &Path) -> Vec<PathBuf> {
    let mut left = Vec::new();
    for e in std::fs::read_dir(dir).expect("read temp dir").flatten() {
        left.push(e.path());
        std::fs::remove_file(e.path()).expect("remove temp file");
    }
    left
}

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch();
    let file = StateFile::new(dir, HOTKEY, NETUID);
    std::fs::write(&file.path, data).expect("write state file");

    let state = file.load(HOTKEY, NETUID);
    assert_eq!((state.hotkey.as_str(), state.netuid), (HOTKEY, NETUID), "load returned another miner's state");

    let fresh = MinerState::new(HOTKEY, NETUID);
    let moved: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".corrupt-"))
        .collect();
    if file.path.exists() {
        // Left in place: it must be a file load accepts (ours, or another miner's: fresh state).
        assert!(moved.is_empty(), "file both kept and moved aside");
        assert_eq!(std::fs::read(&file.path).unwrap(), data, "a kept state file was modified by load");
        assert_eq!(file.load(HOTKEY, NETUID), state, "second load of a kept file differs");
        assert!(file.path.exists(), "a file accepted once was moved aside on the second load");
    } else {
        // Not accepted: moved aside with its exact bytes, and patrol starts fresh.
        assert_eq!(state, fresh, "a rejected file produced a non-fresh state");
        assert_eq!(moved.len(), 1, "rejected state file not moved aside");
        assert_eq!(std::fs::read(&moved[0]).unwrap(), data, "moved-aside file lost bytes");
    }

    // What was loaded can be written and read back unchanged.
    if state != fresh {
        clear(dir);
        file.save(&state).expect("save of a loaded state");
        assert_eq!(file.load(HOTKEY, NETUID), state, "state does not survive save + load");
    }
});
