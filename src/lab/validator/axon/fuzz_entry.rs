//! The axon's request pipeline without a socket, for the fuzz targets (`fuzz/`) and tests: a
//! request goes through the same `handle` the served axon runs (routing, header parsing, blacklist,
//! verification, priority, body limit and parsing, handler, response headers), against a fresh
//! validator whose store lives in a temporary directory and whose GitHub is a stub. Not used by
//! patrol itself.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, Uri};

pub use super::body::success_json;
use super::{Axon, AxonConfig};
use crate::github::{IdentityResult, Mode, TestQueryResult};
use crate::lab::validator::handlers::{BoxFuture, CredentialChecker, PatValidator};
use crate::lab::validator::{Metagraph, PatStore, RegisteredMiner};
use crate::wallet::Hotkey;

/// The seed of the axon hotkey the recorded vectors (`tests/data/vectors/axon_responses.json`) were
/// signed for: `5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi`.
pub const AXON_SEED: [u8; 32] = [0x11; 32];

/// Registered miners: the vectors' dendrite hotkey (uid 1) and a second key (uid 2). Anything
/// else is blacklisted.
pub const MINERS: [(u16, &str, f64); 2] = [
    (1, "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV", 100.0),
    (2, "5FXD2EGvYFKpbTWhfyRQBbmGMoXJDXezufPbNYgmfo3kygde", 1.0),
];

/// Wall-clock time (ns) the vectors were recorded at: a session's clock is set to it, so their
/// nonces are fresh.
pub const VECTORS_TIME_NS: u64 = 1_795_311_700_000_000_000;

/// A stub GitHub, by token prefix: `ghp_valid…` is a valid PAT of user 1 (`ghp_validbad…`: its
/// test query fails permanently, `ghp_validslow…`: transiently), `ghp_transient…` is a transient
/// `/user` failure, anything else is a bad credential.
struct StubGithub;

impl CredentialChecker for StubGithub {
    fn identity<'a>(&'a self, token: &'a str) -> BoxFuture<'a, IdentityResult> {
        Box::pin(async move {
            if token.starts_with("ghp_valid") {
                IdentityResult::Valid { id: "1".into(), login: "octo".into() }
            } else if token.starts_with("ghp_transient") {
                IdentityResult::Transient { detail: "GitHub returned 502".into(), retry_after: None }
            } else {
                IdentityResult::InvalidAuth { status: Some(401), message: "Bad credentials".into() }
            }
        })
    }

    fn test_query<'a>(&'a self, token: &'a str) -> BoxFuture<'a, TestQueryResult> {
        Box::pin(async move {
            if token.starts_with("ghp_validbad") {
                TestQueryResult::Failed {
                    detail: "GitHub GraphQL API returned 401".into(),
                    transient: false,
                    retry_after: None,
                }
            } else if token.starts_with("ghp_validslow") {
                TestQueryResult::Failed {
                    detail: "GitHub GraphQL API returned 503".into(),
                    transient: true,
                    retry_after: None,
                }
            } else {
                TestQueryResult::Ok
            }
        })
    }
}

/// One validator with an empty store, and its axon. Requests of one session share the store and
/// the nonce memory, as requests to one running axon do.
pub struct Session {
    axon: Axon,
    _dir: tempfile::TempDir,
}

/// An answer: status, headers in order, body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }
}

impl Session {
    /// A fresh validator (store in a new directory under `base`, e.g. `/dev/shm`) with
    /// [`MINERS`] registered, serving as [`AXON_SEED`]'s hotkey. `now_ns`: the axon's clock
    /// (`None`: the real one; [`VECTORS_TIME_NS`] makes the recorded requests fresh).
    pub fn new(base: Option<&std::path::Path>, mut cfg: AxonConfig, now_ns: Option<u64>) -> std::io::Result<Session> {
        let dir = match base {
            Some(b) => tempfile::tempdir_in(b)?,
            None => tempfile::tempdir()?,
        };
        let miners = MINERS.iter().map(|&(uid, hotkey, stake)| RegisteredMiner { uid, hotkey: hotkey.into(), stake });
        let metagraph = Metagraph::new(miners).map_err(std::io::Error::other)?;
        let store = Arc::new(PatStore::new(dir.path().join("miner_pats.json")));
        let validator = Arc::new(PatValidator::new(metagraph, store, Arc::new(StubGithub), Mode::Fixed));
        if let Some(t) = now_ns {
            let offset = i128::from(t) - i128::from(crate::wire::now_ns());
            cfg.clock_offset_ns = i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX });
        }
        let axon = Axon::new(validator, hotkey(), cfg);
        Ok(Session { axon, _dir: dir })
    }

    /// The store file.
    pub fn store_path(&self) -> PathBuf {
        self.axon.validator().store().path().to_path_buf()
    }

    /// Answer one request as the served axon would. `None` when the request could not have reached
    /// the handler (a method or target that is not HTTP); header names or values that are not HTTP
    /// are dropped, as a client library would refuse to send them.
    pub async fn request(
        &self,
        method: &[u8],
        target: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
    ) -> Option<Reply> {
        let method = Method::from_bytes(method).ok()?;
        let uri = Uri::try_from(target).ok()?;
        let mut req = Request::new(Body::from(body.to_vec()));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        let map = req.headers_mut();
        for (name, value) in headers {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                map.append(n, v);
            }
        }
        let resp = super::handle(self.axon.clone(), None, req).await;
        let status = resp.status().as_u16();
        let headers = resp.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec())).collect();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.ok()?.to_vec();
        Some(Reply { status, headers, body })
    }
}

/// The axon's hotkey ([`AXON_SEED`]), derived once.
fn hotkey() -> Arc<Hotkey> {
    static HOTKEY: OnceLock<Arc<Hotkey>> = OnceLock::new();
    Arc::clone(HOTKEY.get_or_init(|| Arc::new(Hotkey::from_seed(&AXON_SEED))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_like_the_served_axon() {
        let cfg = AxonConfig { require_signature: false, require_body_hotkey_match: false, ..AxonConfig::default() };
        let s = Session::new(None, cfg, Some(VECTORS_TIME_NS)).unwrap();
        let r = s.request(b"POST", b"/Nope", &[], b"").await.unwrap();
        assert_eq!(r.status, 404);
        let hk: &[u8] = MINERS[0].1.as_bytes();
        let nonce = (VECTORS_TIME_NS - 1).to_string();
        let headers: [(&[u8], &[u8]); 5] = [
            (b"bt_header_dendrite_hotkey", hk),
            (b"bt_header_dendrite_nonce", nonce.as_bytes()),
            (b"bt_header_dendrite_version", b"10003001"),
            (b"computed_body_hash", crate::wire::EMPTY_BODY_HASH.as_bytes()),
            (b"bt_header_input_obj_github_access_token", b"IiI="),
        ];
        let body =
            format!(r#"{{"github_access_token": "ghp_valid_token", "dendrite": {{"hotkey": "{}"}}}}"#, MINERS[0].1);
        let r = s.request(b"POST", b"/PatBroadcastSynapse", &headers, body.as_bytes()).await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["accepted"], true);
        assert_eq!(v["github_access_token"], "");
        assert!(std::fs::read_to_string(s.store_path()).unwrap().contains("ghp_valid_token"));
        assert!(r.header("bt_header_axon_status_code").is_some());
        // the same nonce again is a replay
        let r = s.request(b"POST", b"/PatBroadcastSynapse", &headers, body.as_bytes()).await.unwrap();
        assert_eq!(r.status, 401);
        // not HTTP: never reaches the handler
        assert!(s.request(b"PO ST", b"/Synapse", &[], b"").await.is_none());
    }
}
