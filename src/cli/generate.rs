//! `patrol completions SHELL` and `patrol man`: shell completion scripts and the manual page,
//! generated from the clap definitions in [`crate::cli`] (so they cannot drift from the real
//! flags). `scripts/package-deb.sh` runs both for the `.deb`.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, EXIT_CODES_HELP, Exit};

/// Write the completion script for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<Exit> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "patrol", &mut script);
    write_stdout(&script)
}

/// Write the manual page (roff, section 1) to stdout.
pub fn man() -> anyhow::Result<Exit> {
    write_stdout(&man_page()?)
}

/// `patrol man | head` is not an error.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<Exit> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(Exit::Covered),
    }
}

/// What the page says before the commands.
const DESCRIPTION: &str = "\
patrol checks every eligible validator of the subnet with PatCheckSynapse (no PAT is sent), \
compares the answers with the desired state \\(em every eligible validator holds the miner's \
current, valid PAT \\(em and re-sends the PAT, with per-validator backoff and within a GitHub \
call budget, only where it is missing. \\fBpatrol run\\fR does this forever as a systemd \
service; \\fBpatrol status\\fR shows what it knows without contacting anyone.
.PP
Each command takes the options shown with it; \\fBpatrol\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR \
prints the same. The configuration file (TOML, every key optional) is documented in \
/usr/share/doc/patrol/examples/config.example.toml.";

/// One page for the whole tool: NAME, SYNOPSIS, DESCRIPTION, the global OPTIONS, the COMMANDS with
/// each visible command's synopsis and options, EXIT STATUS, FILES, VERSION.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut cmd = Cli::command();
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone()).manual("patrol manual");
    let mut w = Vec::new();
    man.render_title(&mut w)?;
    man.render_name_section(&mut w)?;
    man.render_synopsis_section(&mut w)?;
    writeln!(w, ".SH DESCRIPTION\n{DESCRIPTION}")?;
    man.render_options_section(&mut w)?;
    writeln!(w, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command_section(&mut w, sub, "patrol")?;
    }
    writeln!(w, ".SH \"EXIT STATUS\"")?;
    let mut lines = EXIT_CODES_HELP.lines();
    writeln!(w, "{}", roff_text(lines.next().unwrap_or_default()))?;
    for (code, meaning) in lines.filter_map(|l| l.trim().split_once(char::is_whitespace)) {
        writeln!(w, ".TP\n\\fB{code}\\fR\n{}", roff_text(meaning.trim()))?;
    }
    writeln!(w, ".SH FILES")?;
    for (path, what) in [
        (
            "~/.config/patrol/config.toml, /etc/patrol/config.toml",
            "the configuration, unless --config or $PATROL_CONFIG names another ($XDG_CONFIG_HOME is honoured)",
        ),
        ("/usr/share/doc/patrol/examples/config.example.toml", "every key, commented, with its default"),
        ("/var/lib/patrol", "the packaged service's state: per-validator history, the metagraph cache"),
    ] {
        writeln!(w, ".TP\n\\fI{}\\fR\n{}", roff_text(path), roff_text(what))?;
    }
    man.render_version_section(&mut w)?;
    Ok(w)
}

/// `.SS "patrol NAME"`: what the command does, its synopsis and its own options (the global ones
/// are listed once, under OPTIONS), then its visible subcommands the same way.
fn command_section(w: &mut Vec<u8>, sub: &clap::Command, parent: &str) -> std::io::Result<()> {
    let name = format!("{parent} {}", sub.get_name());
    writeln!(w, ".SS \"{name}\"")?;
    let mut own = sub.clone();
    for global in ["config", "log_format", "verbose", "help", "version"] {
        if own.get_arguments().any(|a| a.get_id() == global) {
            own = own.mut_arg(global, |a| a.hide(true));
        }
    }
    let page = clap_mangen::Man::new(own);
    let mut part = Vec::new();
    page.render_description_section(&mut part)?;
    page.render_synopsis_section(&mut part)?;
    page.render_options_section(&mut part)?;
    // Each command is a subsection of COMMANDS: its section headings become paragraph breaks.
    for line in String::from_utf8_lossy(&part).lines() {
        if line.starts_with(".SH ") {
            writeln!(w, ".PP")?;
        } else {
            writeln!(w, "{line}")?;
        }
    }
    for s in sub.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        command_section(w, s, &name)?;
    }
    Ok(())
}

/// Plain text as roff: backslashes and minus signs escaped, no line starting with a control
/// character.
fn roff_text(s: &str) -> String {
    let t = s.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with(['.', '\'']) { format!("\\&{t}") } else { t }
}
