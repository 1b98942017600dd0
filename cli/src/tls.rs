//! TLS for `https://` and `wss://` servers: rustls on ring with the platform's trust store.

use std::sync::Arc;

use crate::error::CliError;

/// Installs ring as the process's rustls crypto provider (once; later calls do nothing).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A rustls client configuration that verifies servers with the platform's trust store.
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, CliError> {
    use rustls_platform_verifier::ConfigVerifierExt;
    install_crypto_provider();
    rustls::ClientConfig::with_platform_verifier()
        .map(Arc::new)
        .map_err(|e| CliError::Local(format!("TLS set-up: {e}")))
}
