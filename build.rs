//! Build facts for `patrol --version` and `patrol_build_info` (src/version.rs): the git revision,
//! the target triple and the rustc version. No build-time crates: `git` and `$RUSTC` when present.
//!
//! The revision is `git rev-parse --short=12 HEAD` when this crate is the top of a git work tree
//! (not a tarball unpacked inside some other repository), else `$PATROL_REVISION` if set (a
//! distribution building from a tarball), else "unknown".

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PATROL_REVISION");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let revision = git_revision(&manifest)
        .or_else(|| std::env::var("PATROL_REVISION").ok().filter(|r| !r.trim().is_empty()))
        .unwrap_or_else(|| "unknown".into());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=PATROL_BUILD_REVISION={}", revision.trim());
    println!("cargo:rustc-env=PATROL_BUILD_TARGET={target}");
    println!("cargo:rustc-env=PATROL_BUILD_RUSTC={}", rustc_version().unwrap_or_else(|| "unknown".into()));
}

/// `git -C dir args…`, trimmed stdout, or `None` (no git, not a repository, an error).
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn git_revision(manifest: &Path) -> Option<String> {
    let top = git(manifest, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != manifest.canonicalize().ok()? {
        return None;
    }
    let rev = git(manifest, &["rev-parse", "--short=12", "HEAD"])?;
    // Build again when HEAD moves: the HEAD file (a branch switch) and the branch's ref (a commit).
    // Worktrees keep HEAD in their own git dir and refs in the common one.
    let git_dir = git(manifest, &["rev-parse", "--absolute-git-dir"])?;
    println!("cargo:rerun-if-changed={git_dir}/HEAD");
    if let (Some(common), Some(branch)) = (
        git(manifest, &["rev-parse", "--path-format=absolute", "--git-common-dir"]),
        git(manifest, &["symbolic-ref", "-q", "HEAD"]),
    ) {
        let loose = Path::new(&common).join(&branch);
        if loose.exists() {
            println!("cargo:rerun-if-changed={}", loose.display());
        }
        let packed = Path::new(&common).join("packed-refs");
        if packed.exists() {
            println!("cargo:rerun-if-changed={}", packed.display());
        }
    }
    Some(rev)
}

/// `1.95.0` from `$RUSTC -vV` (`release: 1.95.0`).
fn rustc_version() -> Option<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc).arg("-vV").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.lines().find_map(|l| l.strip_prefix("release: ")).map(|v| v.trim().to_string())
}
