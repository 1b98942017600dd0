//! The HTTP client of tests.
//!
//! The CLI and the chat service build reqwest with rustls but without a bundled crypto provider
//! (they install ring themselves). Cargo unifies features across the crates of one build, so in
//! `cargo test --workspace` every reqwest client would find TLS compiled in and no provider, and
//! panic when built. [`client`] installs ring first, whatever the build.

/// A reqwest client with the defaults, safe to build in any feature combination.
pub fn client() -> reqwest::Client {
    // Fails only when a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
