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

/// Request bodies of 256 KiB, past every service's body limit and more than the socket buffers
/// hold, so the client is still writing when the server refuses them: one streamed in chunks
/// and one with a declared length, each with its name for assertion messages.
pub fn oversized_bodies() -> [(&'static str, reqwest::Body); 2] {
    const KIB: usize = 1024;
    let chunks = (0..256).map(|_| Ok::<_, std::io::Error>(vec![b' '; KIB]));
    [
        (
            "streamed",
            reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
        ),
        ("declared", reqwest::Body::from(vec![b' '; 256 * KIB])),
    ]
}
