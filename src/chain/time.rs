//! The chain's clock: `Timestamp::Now` (milliseconds since the Unix epoch, set by the block author)
//! at the node's best block, for `patrol doctor`'s clock check. Validators reject a first request
//! whose nonce (our clock) is more than 4 s + the timeout behind theirs (docs
//! `gittensor-pat-semantics.md` §2.9), so a local clock far behind the chain's means 401s.
//!
//! One raw `state_getStorage` request on its own short-lived connection (no metadata download): the
//! storage key of a plain storage value is fixed, `twox128("Timestamp") ++ twox128("Now")`.

use std::time::Duration;

use subxt::rpcs::RpcClient;
use subxt::rpcs::client::RpcParams;

use super::ChainError;
use crate::config::ChainSettings;

/// `twox128("Timestamp") ++ twox128("Now")`.
pub const TIMESTAMP_NOW_KEY: &str = "0xf0c365c3cf59d671eb72da0e7a4113c49f1f0515f462cdcf84e0f1d6045dfcbb";

/// `Timestamp::Now` at the best block, in milliseconds since the Unix epoch.
pub async fn now_ms(chain: &ChainSettings) -> Result<u64, ChainError> {
    let secret = &chain.url;
    if secret.expose().starts_with("wss://") {
        crate::tls::install_default_provider();
    }
    // Errors show the endpoint without its credentials (and scrub them from the library's text).
    let url = secret.to_string();
    let connect = |reason: String| ChainError::Connect {
        url: url.clone(),
        timeout: chain.connect_timeout,
        reason: secret.scrub(&reason),
    };
    let rpc = tokio::time::timeout(chain.connect_timeout, RpcClient::from_insecure_url(secret.expose()))
        .await
        .map_err(|_| connect("timed out".into()))?
        .map_err(|e| connect(e.to_string()))?;
    let call = |reason: String| ChainError::Call {
        url: url.clone(),
        netuid: chain.netuid,
        block: None,
        what: "reading Timestamp::Now".into(),
        reason: secret.scrub(&reason),
    };
    let mut params = RpcParams::new();
    params.push(TIMESTAMP_NOW_KEY).map_err(|e| call(e.to_string()))?;
    let answer: Option<String> = tokio::time::timeout(chain.call_timeout, rpc.request("state_getStorage", params))
        .await
        .map_err(|_| call(format!("no answer within {}", humantime::format_duration(chain.call_timeout))))?
        .map_err(|e| call(e.to_string()))?;
    let hex = answer.ok_or_else(|| call("the node has no Timestamp::Now value".into()))?;
    decode(&hex).map_err(call)
}

/// SCALE `u64` (little-endian) from `0x…` hex.
pub fn decode(hex_value: &str) -> Result<u64, String> {
    let bytes = hex::decode(hex_value.trim_start_matches("0x")).map_err(|e| format!("not hex: {e}"))?;
    let arr: [u8; 8] =
        bytes.as_slice().try_into().map_err(|_| format!("expected 8 bytes for a u64, got {}", bytes.len()))?;
    Ok(u64::from_le_bytes(arr))
}

/// How far the local clock may lag the chain's best block before requests risk 401 "Nonce is too
/// old": the fixed part of the validators' window (4 s) halved, for margin.
pub const MAX_BEHIND: Duration = Duration::from_secs(2);

/// How far the chain's best block may lag the local clock: a block every 12 s, a few seconds of
/// propagation, and slack for a node a block or two behind.
pub const MAX_AHEAD: Duration = Duration::from_secs(60);

/// Compare the local clock with the chain's: `Ok(skew)` or `Err(description)`. `skew` is local
/// minus chain in seconds (positive: the chain's latest block is older than our "now", as it
/// normally is).
pub fn check_skew(local_ms: u64, chain_ms: u64) -> Result<f64, String> {
    let skew = (local_ms as f64 - chain_ms as f64) / 1000.0;
    if skew < -MAX_BEHIND.as_secs_f64() {
        return Err(format!(
            "the local clock is {:.1}s behind the chain's latest block; validators reject nonces older than 4 s + the timeout",
            -skew
        ));
    }
    if skew > MAX_AHEAD.as_secs_f64() {
        return Err(format!(
            "the chain's latest block is {skew:.0}s older than the local clock: the local clock is ahead or the node is behind"
        ));
    }
    Ok(skew)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_scale_u64() {
        assert_eq!(decode("0x0068e5cf8b010000").unwrap(), 1_700_000_000_000);
        assert!(decode("0x00").unwrap_err().contains("8 bytes"));
        assert!(decode("zz").is_err());
    }

    #[test]
    fn skew_window() {
        let chain = 1_700_000_000_000;
        assert_eq!(check_skew(chain + 6_000, chain), Ok(6.0));
        assert_eq!(check_skew(chain - 1_500, chain), Ok(-1.5));
        assert!(check_skew(chain - 5_000, chain).unwrap_err().contains("behind"));
        assert!(check_skew(chain + 3_600_000, chain).unwrap_err().contains("older"));
    }
}
