//! Exit codes: a coverage contract for cron, CI and supervisors (README "Exit codes").
//!
//! 0 every eligible validator covered · 1 partial · 2 none covered · 3 coverage undetermined (nobody
//! answered, no validator source) · 64 usage error · 70 internal error · 78 configuration or
//! credential error (bad config, unreadable/too-open PAT file, bad hotkey, hotkey not registered,
//! PAT rejected by GitHub, a state dir that is not a writable directory, a path patrol must write
//! that is a device, FIFO or directory).

use std::process::ExitCode;

use crate::coverage::Verdict;

/// The process exit status patrol uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Exit {
    Covered = 0,
    Partial = 1,
    NoneCovered = 2,
    Undetermined = 3,
    Usage = 64,
    Software = 70,
    Config = 78,
}

impl Exit {
    /// Numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The `error.type` used in `--json` error envelopes (gitt's names where they exist).
    pub fn error_type(self) -> &'static str {
        match self {
            Exit::Usage => "usage_error",
            Exit::Config => "config_error",
            Exit::Undetermined => "undetermined",
            _ => "cli_error",
        }
    }
}

/// The coverage verdict as `check`, `post` and `reconcile` exit with it.
impl From<Verdict> for Exit {
    /// The one verdict → exit mapping ([`Verdict::exit_code`] is its number).
    fn from(v: Verdict) -> Exit {
        match v {
            Verdict::Covered => Exit::Covered,
            Verdict::Partial => Exit::Partial,
            Verdict::NoneCovered => Exit::NoneCovered,
            Verdict::Undetermined => Exit::Undetermined,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// An error that carries its exit code (and a JSON error type) through `anyhow`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Coded {
    pub exit: Exit,
    pub kind: &'static str,
    pub message: String,
}

impl Coded {
    /// New error with a code and a JSON `error.type`, already wrapped for `?`.
    #[allow(clippy::new_ret_no_self, reason = "callers want an anyhow::Error to return with `?`")]
    pub fn new(exit: Exit, kind: &'static str, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Coded { exit, kind, message: message.into() })
    }
}

/// Pick the exit code for an error by looking through its chain for known types.
pub fn classify(err: &anyhow::Error) -> (Exit, &'static str) {
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<Coded>() {
            return (c.exit, c.kind);
        }
        if cause.is::<crate::config::ConfigError>() {
            return (Exit::Config, "config_error");
        }
        if cause.is::<crate::config::PatError>() {
            return (Exit::Config, "pat_error");
        }
        if cause.is::<crate::wallet::WalletError>() {
            return (Exit::Config, "wallet_error");
        }
        // A notification URL that cannot be read (missing file, too open, not a URL).
        if cause.is::<crate::notify::TargetError>() {
            return (Exit::Config, "config_error");
        }
        // An unusable state dir or state file: the operator must fix the setup (issue 15).
        if cause.downcast_ref::<crate::reconcile::state::StateError>().is_some_and(|e| e.is_config()) {
            return (Exit::Config, "state_error");
        }
        // A write refused because the path is a device, FIFO, directory or symlink loop.
        if cause.downcast_ref::<std::io::Error>().and_then(crate::fsutil::refused).is_some() {
            return (Exit::Config, "config_error");
        }
        if let Some(e) = cause.downcast_ref::<crate::chain::ChainError>() {
            return match e {
                crate::chain::ChainError::NotRegistered { .. } => (Exit::Config, "not_registered"),
                crate::chain::ChainError::BadHotkey { .. } => (Exit::Config, "config_error"),
                // unreachable node, cache too old, unknown netuid, undecodable answer: no validator source
                _ => (Exit::Undetermined, "undetermined"),
            };
        }
    }
    (Exit::Software, "cli_error")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::error_chain;

    #[test]
    fn the_exit_code_of_a_verdict_is_its_number() {
        for v in [Verdict::Covered, Verdict::Partial, Verdict::NoneCovered, Verdict::Undetermined] {
            assert_eq!(Exit::from(v).code(), v.exit_code(), "{v:?}");
        }
    }

    #[test]
    fn an_error_chain_does_not_repeat_a_cause_the_message_shows() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let e = crate::config::ConfigError::Read { path: "/x/patrol.toml".into(), source: io.into() };
        let err = anyhow::Error::new(e).context("loading settings");
        let text = error_chain(err.as_ref());
        assert_eq!(
            text,
            "loading settings: cannot read config file /x/patrol.toml: No such file or directory (os error 2)"
        );
        assert_eq!(text.matches("os error 2").count(), 1);
    }

    /// Errors keep their cause in `source()` and out of their own text, so the one renderer shows
    /// each cause once.
    #[test]
    fn errors_name_their_cause_only_as_source() {
        use std::error::Error;
        let io = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "Permission denied (os error 13)");
        let path = std::path::PathBuf::from("/x/file");
        let errors: Vec<Box<dyn Error>> = vec![
            Box::new(crate::config::ConfigError::Read { path: path.clone(), source: io().into() }),
            Box::new(crate::config::PatError::Read { source_desc: "file /x".into(), source: io().into() }),
            Box::new(crate::wallet::WalletError::Read { path: path.clone(), source: io() }),
            Box::new(crate::reconcile::state::StateError::Read { path: path.clone(), source: io() }),
            Box::new(crate::reconcile::state::StateError::Write { path: path.clone(), source: io() }),
            Box::new(crate::reconcile::state::StateError::Lock { path: path.clone(), source: io() }),
            Box::new(crate::lab::validator::StoreError::Read { path: path.clone(), source: io().into() }),
            Box::new(crate::lab::validator::StoreError::Write { path: path.clone(), source: io() }),
            Box::new(crate::notify::TargetError::Read {
                key: "k".into(),
                source_desc: "f".into(),
                source: io().into(),
            }),
        ];
        for e in errors {
            let own = e.to_string();
            assert!(e.source().is_some() && !own.contains("Permission denied"), "{own}");
            assert_eq!(error_chain(e.as_ref()).matches("Permission denied").count(), 1, "{own}");
        }
    }

    #[test]
    fn an_error_chain_keeps_causes_the_message_does_not_show() {
        let err = anyhow::anyhow!("inner cause").context("outer");
        assert_eq!(error_chain(err.as_ref()), "outer: inner cause");
    }
}
