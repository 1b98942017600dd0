//! TLS for outgoing HTTPS (an AuthStack gateway behind TLS): rustls on ring, like the rest of
//! the workspace.

/// Installs ring as the process's rustls crypto provider (once; later calls do nothing).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
