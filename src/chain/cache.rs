//! The metagraph cache: the last good chain snapshot of one (endpoint, netuid), kept in the state
//! dir so patrol still knows where the validators are when the chain cannot be reached.
//!
//! One JSON file per endpoint and netuid (`metagraph-<netuid>-<host>-<hash of the endpoint>.json`):
//! finney's and testnet's netuid 74 are different subnets and must never stand in for each other.
//! An endpoint URL may carry credentials (`wss://user:TOKEN@host/ws?apikey=KEY`), so neither the
//! name nor the content holds more of it than its host and its shown form
//! ([`crate::secret::SecretUrl`]). A cache under the name patrol used before (the whole URL as a
//! slug) is still read once, and removed when the new one is saved. The file holds
//! the neurons as patrol uses them, the block they were read at and when (unix seconds), and is
//! replaced with [`crate::fsutil::atomic_write`], so a crash never leaves half a file. A file that
//! does not parse (or names another endpoint/netuid) or is larger than [`CACHE_CAP`] is moved aside
//! with a warning and treated as absent: a broken cache must never stop patrol. One that cannot be
//! read at all (no permission, a FIFO or device at its path) is left in place and treated as absent;
//! saving over a FIFO or device is refused ([`crate::fsutil::atomic_write`]) and only logged.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::secret::SecretUrl;
use crate::validators::Neuron;

/// Format version of the file; bump when the shape changes (an old file is then moved aside).
const VERSION: u32 = 1;

/// Largest cache file patrol reads. A neuron is ~200 bytes of JSON, so a 256-uid subnet is ~50 KiB
/// and even the u16 maximum of 65536 uids (full-length hotkeys, IPv6 addresses) stays under 20 MiB;
/// 32 MiB bounds what a wrong file (`/dev/zero`, a disk image) can make patrol allocate.
pub const CACHE_CAP: u64 = 32 << 20;

/// The file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedMetagraph {
    pub version: u32,
    /// The endpoint it was read from, as shown (without credentials).
    pub url: String,
    pub netuid: u16,
    pub block: u64,
    /// When it was read, unix seconds.
    pub fetched_at: u64,
    pub neurons: Vec<Neuron>,
}

impl CachedMetagraph {
    /// How old the snapshot is now (zero if the clock went backwards).
    pub fn age(&self) -> Duration {
        let now = unix_now();
        Duration::from_secs(now.saturating_sub(self.fetched_at))
    }
}

/// What [`load`] found.
#[derive(Debug)]
pub enum Loaded {
    Missing,
    /// Unreadable; moved aside to this path (or could not be moved: `None`).
    Corrupt {
        reason: String,
        moved_to: Option<PathBuf>,
    },
    Found(CachedMetagraph),
}

/// The cache file for `url` and `netuid` in `state_dir`: `metagraph-74-entrypoint-finney.opentensor.ai-443-<tag>.json`,
/// the host readable, the tag ([`SecretUrl::tag`]) distinct per endpoint, credentials included.
pub fn path(state_dir: &Path, url: &str, netuid: u16) -> PathBuf {
    let secret = SecretUrl::new(url);
    let host = secret.shown().split_once("://").map_or(secret.shown(), |(_, r)| r);
    let host = host.split('/').next().unwrap_or_default();
    state_dir.join(format!("metagraph-{netuid}-{}-{}.json", slug(host), secret.tag()))
}

/// The name patrol gave the cache before it was named by a hash: the whole URL as a slug (with any
/// credentials in it). Read when the new file is missing; removed once the new one is saved.
fn legacy_path(state_dir: &Path, url: &str, netuid: u16) -> PathBuf {
    state_dir.join(format!("metagraph-{netuid}-{}.json", slug(url)))
}

/// `wss://entrypoint-finney.opentensor.ai:443` → `entrypoint-finney.opentensor.ai-443`: readable,
/// safe as a file name.
fn slug(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let s: String = rest
        .trim_end_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' })
        .take(80)
        .collect();
    if s.is_empty() { "endpoint".into() } else { s }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Save a fresh snapshot. Errors are the caller's to log: a cache that cannot be written must not
/// fail a command that just read the chain successfully.
pub fn save(state_dir: &Path, url: &str, netuid: u16, block: u64, neurons: &[Neuron]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(state_dir)?;
    let file = path(state_dir, url, netuid);
    let c = CachedMetagraph {
        version: VERSION,
        url: SecretUrl::new(url).shown().to_string(),
        netuid,
        block,
        fetched_at: unix_now(),
        neurons: neurons.to_vec(),
    };
    let bytes = serde_json::to_vec(&c).map_err(std::io::Error::other)?;
    crate::fsutil::atomic_write(&file, &bytes, 0o644)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
    let legacy = legacy_path(state_dir, url, netuid);
    if legacy != file && std::fs::symlink_metadata(&legacy).is_ok_and(|m| m.is_file()) {
        match std::fs::remove_file(&legacy) {
            Ok(()) => {
                tracing::info!(path = %file.display(), "the metagraph cache is now named by a hash of the endpoint; removed the file under its old name")
            }
            Err(e) => warn!(error = %e, "cannot remove the metagraph cache under its old name"),
        }
    }
    Ok(file)
}

/// Read the snapshot for `url`/`netuid`, moving an unreadable file aside. A cache saved under the
/// old name ([`legacy_path`]) is read when there is none under the new one.
pub fn load(state_dir: &Path, url: &str, netuid: u16) -> Loaded {
    let shown = SecretUrl::new(url).shown().to_string();
    match load_file(&path(state_dir, url, netuid), &shown, netuid) {
        Loaded::Missing => {
            // Anything wrong with a file under the old name: as if it were not there (it is
            // removed at the next save).
            let legacy = crate::fsutil::read_capped(&legacy_path(state_dir, url, netuid), CACHE_CAP).ok();
            match legacy.and_then(|b| serde_json::from_slice::<CachedMetagraph>(&b).ok()) {
                Some(c) if c.version == VERSION && c.url == url && c.netuid == netuid => {
                    Loaded::Found(CachedMetagraph { url: shown, ..c })
                }
                _ => Loaded::Missing,
            }
        }
        other => other,
    }
}

/// Read one cache file, written for the endpoint `url` (as the file stores it) and `netuid`.
fn load_file(file: &Path, url: &str, netuid: u16) -> Loaded {
    let file = file.to_path_buf();
    let reason = match crate::fsutil::read_capped(&file, CACHE_CAP) {
        Ok(bytes) => match serde_json::from_slice::<CachedMetagraph>(&bytes) {
            Ok(c) if c.version != VERSION => {
                format!("format version {} (expected {VERSION})", c.version)
            }
            // Two endpoints whose names map to the same file: not ours, but not broken either; the
            // next save replaces it.
            Ok(c) if c.url != url || c.netuid != netuid => return Loaded::Missing,
            Ok(c) => return Loaded::Found(c),
            Err(e) => e.to_string(),
        },
        Err(crate::fsutil::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
        // A regular file, just not one patrol wrote: moved aside like a corrupt one.
        Err(e @ crate::fsutil::ReadError::TooLarge { .. }) => e.to_string(),
        Err(e) => {
            // Unreadable (permissions, I/O) or not a regular file (a FIFO, a device): leave it in
            // place; the next save refuses to replace what is not a regular file, too.
            warn!(path = %file.display(), error = %e, "cannot read the metagraph cache");
            return Loaded::Corrupt { reason: e.to_string(), moved_to: None };
        }
    };
    let moved_to = match crate::fsutil::move_aside(&file, "corrupt") {
        Ok(p) => Some(p),
        Err(e) => {
            warn!(path = %file.display(), error = %e, "cannot move the unreadable metagraph cache aside");
            None
        }
    };
    warn!(
        path = %file.display(),
        moved_to = %moved_to.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
        %reason,
        "ignoring an unreadable metagraph cache"
    );
    Loaded::Corrupt { reason, moved_to }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neuron(uid: u16) -> Neuron {
        Neuron {
            uid,
            hotkey: format!("hk{uid}"),
            ip: Some("10.0.0.1".parse().unwrap()),
            port: 8091,
            vtrust: 0.5000076295109483,
            stake: 77.000000001,
            validator_permit: true,
        }
    }

    #[test]
    fn round_trip_and_age() {
        let d = tempfile::tempdir().unwrap();
        let url = "ws://127.0.0.1:9944";
        let p = save(d.path(), url, 74, 123, &[neuron(0), neuron(1)]).unwrap();
        assert_eq!(p, path(d.path(), url, 74));
        let tag = SecretUrl::new(url).tag();
        assert_eq!(p.file_name().unwrap().to_str().unwrap(), format!("metagraph-74-127.0.0.1-9944-{tag}.json"));
        let Loaded::Found(c) = load(d.path(), url, 74) else { panic!("not found") };
        assert_eq!(c.block, 123);
        assert_eq!(c.neurons, vec![neuron(0), neuron(1)], "f64 values survive JSON exactly");
        assert!(c.age() < Duration::from_secs(5));
        // another endpoint or netuid has its own file
        assert!(matches!(load(d.path(), "wss://other:443", 74), Loaded::Missing));
        assert!(matches!(load(d.path(), url, 1), Loaded::Missing));
    }

    /// serde_json's default float parser can be off by one ULP; with `float_roundtrip` every vtrust
    /// the chain can give (u16 / 65535) and stakes in rao / 1e9 come back bit-identical from the
    /// cache, so a cached read selects exactly the validators the live read did (`> 0.25` is strict).
    #[test]
    fn every_vtrust_and_stake_survives_the_cache_bit_for_bit() {
        let d = tempfile::tempdir().unwrap();
        let url = "ws://127.0.0.1:9944";
        let stakes = (0..=u16::MAX).map(|i| (u64::from(i) * 1_000_003_571_113) as f64 / 1e9);
        let neurons: Vec<Neuron> = (0..=u16::MAX)
            .zip(stakes)
            .map(|(i, stake)| Neuron { vtrust: f64::from(i) / 65535.0, stake, ..neuron(i) })
            .collect();
        save(d.path(), url, 74, 1, &neurons).unwrap();
        let Loaded::Found(c) = load(d.path(), url, 74) else { panic!("not found") };
        assert_eq!(c.neurons.len(), neurons.len());
        for (a, b) in c.neurons.iter().zip(&neurons) {
            assert_eq!(a.vtrust.to_bits(), b.vtrust.to_bits(), "vtrust of uid {}", b.uid);
            assert_eq!(a.stake.to_bits(), b.stake.to_bits(), "stake of uid {}", b.uid);
        }
    }

    #[test]
    fn corrupt_file_is_moved_aside() {
        let d = tempfile::tempdir().unwrap();
        let url = "wss://entrypoint-finney.opentensor.ai:443";
        let p = path(d.path(), url, 74);
        std::fs::write(&p, b"{not json").unwrap();
        let Loaded::Corrupt { moved_to: Some(moved), .. } = load(d.path(), url, 74) else { panic!("not corrupt") };
        assert!(!p.exists());
        assert_eq!(std::fs::read(moved).unwrap(), b"{not json");
        assert!(matches!(load(d.path(), url, 74), Loaded::Missing));
    }

    #[test]
    fn a_fifo_at_the_cache_path_is_neither_read_nor_replaced() {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::FileTypeExt;
        let d = tempfile::tempdir().unwrap();
        let url = "ws://127.0.0.1:9944";
        let p = path(d.path(), url, 74);
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // load returns at once (a read would block until a writer came)
        let Loaded::Corrupt { reason, moved_to: None } = load(d.path(), url, 74) else { panic!("not refused") };
        assert!(reason.contains("a FIFO"), "{reason}");
        let e = save(d.path(), url, 74, 1, &[neuron(0)]).unwrap_err();
        assert!(e.to_string().contains("is a FIFO, not a regular file"), "{e}");
        assert!(std::fs::symlink_metadata(&p).unwrap().file_type().is_fifo());
    }

    #[test]
    fn a_cache_file_over_the_cap_is_moved_aside_unread() {
        let d = tempfile::tempdir().unwrap();
        let url = "ws://127.0.0.1:9944";
        let p = path(d.path(), url, 74);
        std::fs::File::create(&p).unwrap().set_len(CACHE_CAP + 1).unwrap();
        let Loaded::Corrupt { reason, moved_to: Some(moved) } = load(d.path(), url, 74) else { panic!("not corrupt") };
        assert!(reason.contains(&format!("larger than {CACHE_CAP} bytes")), "{reason}");
        assert_eq!(std::fs::metadata(moved).unwrap().len(), CACHE_CAP + 1);
        assert!(matches!(load(d.path(), url, 74), Loaded::Missing));
    }

    #[test]
    fn a_cache_under_the_old_name_is_read_once_and_replaced() {
        let d = tempfile::tempdir().unwrap();
        let url = "wss://user:TOKEN1234@node.example:443/ws?apikey=KEY5678";
        let old = d.path().join("metagraph-74-user-TOKEN1234-node.example-443-ws-apikey-KEY5678.json");
        assert_eq!(legacy_path(d.path(), url, 74), old);
        let c = CachedMetagraph {
            version: VERSION,
            url: url.into(),
            netuid: 74,
            block: 7,
            fetched_at: unix_now(),
            neurons: vec![neuron(0)],
        };
        std::fs::write(&old, serde_json::to_vec(&c).unwrap()).unwrap();
        let Loaded::Found(found) = load(d.path(), url, 74) else { panic!("the old file is read") };
        assert_eq!((found.block, found.url.as_str()), (7, "wss://node.example:443/ws"));
        let new = save(d.path(), url, 74, 8, &[neuron(0)]).unwrap();
        assert!(!old.exists(), "removed once the new one is saved");
        let name = new.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with("metagraph-74-node.example-443-") && !name.contains("TOKEN") && !name.contains("KEY"));
        let text = std::fs::read_to_string(&new).unwrap();
        assert!(!text.contains("TOKEN1234") && !text.contains("KEY5678"), "{text}");
        let Loaded::Found(found) = load(d.path(), url, 74) else { panic!("the new file is read") };
        assert_eq!(found.block, 8);
        // another key for the same host is another endpoint
        assert!(matches!(load(d.path(), "wss://user:TOKEN1234@node.example:443/ws?apikey=OTHER", 74), Loaded::Missing));
    }

    #[test]
    fn future_timestamp_is_age_zero() {
        let c =
            CachedMetagraph { version: 1, url: "u".into(), netuid: 1, block: 1, fetched_at: u64::MAX, neurons: vec![] };
        assert_eq!(c.age(), Duration::ZERO);
    }
}
