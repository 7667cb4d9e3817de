//! Logging setup: tracing to stderr. Human text with colours on a terminal, journald-friendly text
//! (no timestamps, no colours; journald adds both) when `$JOURNAL_STREAM` says stderr goes to the
//! journal, JSON lines on request. Stdout stays clean for `--json` output.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, Settings};

fn filter(verbose: u8) -> EnvFilter {
    let default = match verbose {
        0 => "patrol=info,warn",
        1 => "patrol=debug,info",
        _ => "trace",
    };
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
}

/// Resolve `Auto` to a concrete format for this process.
pub fn effective(format: LogFormat) -> LogFormat {
    match format {
        LogFormat::Auto if std::env::var_os("JOURNAL_STREAM").is_some() && !std::io::stderr().is_terminal() => {
            LogFormat::Journald
        }
        other => other,
    }
}

/// Install the global subscriber from settings. Safe to call twice (the second is ignored).
pub fn init(settings: &Settings, verbose: u8) {
    install(effective(settings.agent.log_format), verbose);
}

/// Install from a format name, for commands that don't load the miner config.
pub fn init_simple(format: Option<&str>, verbose: u8) {
    let f = match format {
        Some("json") => LogFormat::Json,
        Some("journald") => LogFormat::Journald,
        Some("text") => LogFormat::Text,
        _ => LogFormat::Auto,
    };
    install(effective(f), verbose);
}

fn install(format: LogFormat, verbose: u8) {
    let builder = tracing_subscriber::fmt().with_env_filter(filter(verbose)).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Journald => builder.without_time().with_ansi(false).with_target(false).try_init(),
        LogFormat::Text | LogFormat::Auto => {
            builder.with_ansi(std::io::stderr().is_terminal()).with_target(false).try_init()
        }
    };
}
