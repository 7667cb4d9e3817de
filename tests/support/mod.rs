//! Shared helpers for the integration tests.

/// Real Python `bittensor==10.3.1` harness launchers (venv, axon, dendrite).
pub mod python;

pub mod cli;
/// `patrol dev fake-github` as a process, with a blocking client for its control API.
pub mod fake_github;
/// Loopback Subtensor JSON-RPC mock node serving the recorded chain fixtures.
pub mod mock_node;
/// Local Discord/Slack/Telegram/ntfy/webhook/healthchecks/Uptime Kuma receivers with schema checks.
pub mod receivers;

/// Long-running patrol processes (validator serve, dev fake-github) with ready lines.
pub mod serve;
pub mod subnet;

/// The body of an HTTP/1.1 chunked response (test clients speak raw HTTP over a `TcpStream`).
pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
