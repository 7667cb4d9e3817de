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

/// One line for an error and its causes, like anyhow's `{:#}`, but a cause whose text the message
/// already shows is not repeated (our error types print their I/O source inline and also expose it
/// as `source()`, so `{:#}` would say "No such file or directory" twice). Anything that looks like a
/// GitHub token is redacted ([`crate::secret::redact_tokens`]): errors quote paths and values the
/// user typed, and a PAT pasted as `--pat-file`, `--config` or `--network` must not be echoed.
pub fn render(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    crate::secret::redact_tokens(&out).into_owned()
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

    #[test]
    fn render_does_not_repeat_a_cause_the_message_shows() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let e = crate::config::ConfigError::Read { path: "/x/patrol.toml".into(), source: io };
        let err = anyhow::Error::new(e).context("loading settings");
        let text = render(err.as_ref());
        assert_eq!(
            text,
            "loading settings: cannot read config file /x/patrol.toml: No such file or directory (os error 2)"
        );
        assert_eq!(text.matches("os error 2").count(), 1);
    }

    #[test]
    fn render_keeps_causes_the_message_does_not_show() {
        let err = anyhow::anyhow!("inner cause").context("outer");
        assert_eq!(render(err.as_ref()), "outer: inner cause");
    }
}
