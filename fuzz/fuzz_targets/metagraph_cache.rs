//! `chain::cache::load` (the metagraph snapshot in the state dir) on arbitrary file contents: it
//! never panics, an unreadable file is moved aside byte for byte (never left in place), and a
//! snapshot it accepts survives save + load unchanged.
#![no_main]

mod common;

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use patrol::chain::cache::{self, Loaded};

const URL: &str = "wss://entrypoint-finney.opentensor.ai:443";
const NETUID: u16 = 74;

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).expect("read temp dir").flatten().map(|e| e.path()).collect()
}

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch();
    let path = cache::path(dir, URL, NETUID);
    std::fs::write(&path, data).unwrap();

    match cache::load(dir, URL, NETUID) {
        Loaded::Missing => {
            // Another endpoint's snapshot under the same name: left alone, unchanged.
            assert_eq!(std::fs::read(&path).unwrap(), data, "a foreign cache file was modified");
            assert_eq!(files(dir).len(), 1);
        }
        Loaded::Corrupt { reason, moved_to } => {
            assert!(!path.exists(), "unreadable cache left in place ({reason})");
            let moved = moved_to.expect("a corrupt cache in a writable dir is moved aside");
            assert_eq!(std::fs::read(&moved).unwrap(), data, "moved-aside cache lost bytes");
            assert!(matches!(cache::load(dir, URL, NETUID), Loaded::Missing));
        }
        Loaded::Found(c) => {
            assert_eq!((c.url.as_str(), c.netuid), (URL, NETUID));
            assert_eq!(std::fs::read(&path).unwrap(), data, "load modified a good cache file");
            cache::save(dir, URL, NETUID, c.block, &c.neurons).expect("save of a loaded snapshot");
            let Loaded::Found(again) = cache::load(dir, URL, NETUID) else {
                panic!("a snapshot patrol wrote does not load back");
            };
            assert_eq!(again.block, c.block);
            assert_eq!(again.neurons.len(), c.neurons.len());
            for (a, b) in again.neurons.iter().zip(&c.neurons) {
                let same = a.uid == b.uid
                    && a.hotkey == b.hotkey
                    && a.ip == b.ip
                    && a.port == b.port
                    && a.validator_permit == b.validator_permit
                    && common::f64_eq(a.vtrust, b.vtrust)
                    && common::f64_eq(a.stake, b.stake);
                assert!(same, "neuron changed through save + load:\n{a:?}\n{b:?}");
            }
            if *common::FLOATS_ROUND_TRIP {
                assert_eq!(again.neurons, c.neurons);
            }
        }
    }
});
