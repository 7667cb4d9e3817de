//! What this binary is: its version, the git revision it was built from, the target triple and the
//! rustc that built it (set by `build.rs`). `patrol --version` and `patrol_build_info` print them.

/// The crate version (`0.1.0`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision (12 hex digits), or "unknown" (built from a tarball without `.git`).
pub const REVISION: &str = env!("PATROL_BUILD_REVISION");
/// The target triple (`x86_64-unknown-linux-gnu`).
pub const TARGET: &str = env!("PATROL_BUILD_TARGET");
/// The rustc release that built it (`1.95.0`).
pub const RUSTC: &str = env!("PATROL_BUILD_RUSTC");

/// `0.1.0 (rev 0123456789ab, x86_64-unknown-linux-gnu, rustc 1.95.0)`: `patrol --version` prints
/// `patrol ` and this (`-V` prints the version alone, as clap does).
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (rev ",
    env!("PATROL_BUILD_REVISION"),
    ", ",
    env!("PATROL_BUILD_TARGET"),
    ", rustc ",
    env!("PATROL_BUILD_RUSTC"),
    ")"
);
