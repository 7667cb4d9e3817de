//! The systemd notification protocol (`sd_notify(3)`) as the agent uses it: `READY=1` once the first
//! pass is done, a one-line `STATUS=`, `WATCHDOG=1` from the main loop, `RELOADING=1` with
//! `MONOTONIC_USEC=` while re-reading the configuration (`Type=notify-reload`), and `STOPPING=1`.
//!
//! Owns nothing but the socket calls. Without `$NOTIFY_SOCKET` every call is a no-op (the `sd-notify`
//! crate returns early), so the agent behaves the same outside systemd, silently. A failed send is
//! logged at debug and otherwise ignored: systemd being away must never stop reconciliation.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends state changes to the service manager.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    /// Sent `READY=1` at least once: the watchdog is only armed after start-up completes
    /// (systemd.service `WatchdogSec=`), so pings before that are pointless.
    ready: bool,
}

impl Notifier {
    /// A notifier; nothing is sent yet.
    pub fn new() -> Notifier {
        Notifier::default()
    }

    /// Whether `READY=1` has been sent.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// `READY=1` plus the status line (start-up finished, or a reload finished).
    pub fn ready(&mut self, status: &str) {
        self.ready = true;
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `STATUS=` only.
    pub fn status(&self, status: &str) {
        send(&[NotifyState::Status(status)]);
    }

    /// `WATCHDOG=1`, once ready.
    pub fn watchdog(&self) {
        if self.ready {
            send(&[NotifyState::Watchdog]);
        }
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` (required by `Type=notify-reload`, harmless for
    /// `Type=notify`), and a status line saying why. Only once ready: before that the service is
    /// still starting, and the `READY=1` that ends start-up also covers the new configuration.
    pub fn reloading(&self, status: &str) {
        if !self.ready {
            return;
        }
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now, NotifyState::Status(status)]),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read CLOCK_MONOTONIC for MONOTONIC_USEC");
                send(&[NotifyState::Reloading, NotifyState::Status(status)]);
            }
        }
    }

    /// `STOPPING=1` and a status line.
    pub fn stopping(&self, status: &str) {
        send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }
}

/// How often to ping the watchdog: half of `$WATCHDOG_USEC` (sd_notify(3) recommends pinging at
/// half the timeout), when the watchdog is enabled for this process.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|t| (t / 2).max(Duration::from_millis(1)))
}

fn send(states: &[NotifyState<'_>]) {
    let abstract_socket = std::env::var("NOTIFY_SOCKET").ok().and_then(|s| s.strip_prefix('@').map(str::to_owned));
    let result = match abstract_socket {
        // The crate connects to a filesystem path only; systemd also hands out abstract sockets
        // ("@name", e.g. in containers), so send those here.
        Some(name) => send_abstract(&name, states),
        None => sd_notify::notify(states),
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

fn send_abstract(name: &str, states: &[NotifyState<'_>]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
    let sock = UnixDatagram::unbound()?;
    sock.connect_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)?;
    sock.send(msg.as_bytes()).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_sockets_get_the_message() {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let name = format!("patrol-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send_abstract(&name, &[NotifyState::Ready, NotifyState::Status("1/1 covered")]).unwrap();
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=1/1 covered\n");
    }
}
