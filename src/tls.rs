//! One-time TLS setup. reqwest is built with `rustls-no-provider` (so only `ring` is compiled, not
//! aws-lc as well) and panics at `Client::build` unless a process-wide provider is installed.

/// Install rustls' `ring` provider as the process default. Idempotent; a provider installed by
/// someone else (jsonrpsee does this too) is fine.
pub fn install_default_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
