//! The edge verifier used for every identity provider in `make bench-peers`: an HTTP server
//! that verifies the bearer JWT of each request against the provider's JWKS and answers 200
//! with the subject and key id, or 401. It verifies the signature on every request (no cache
//! of verified tokens), re-reads the JWKS periodically and when a token names an unknown key
//! (rate limited), like a resource server in front of Keycloak or Dex would.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use clap::Parser;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

#[derive(Parser)]
struct Args {
    /// Listen address.
    #[arg(long, env = "JWT_EDGE_LISTEN", default_value = "127.0.0.1:8095")]
    listen: SocketAddr,
    /// The provider's JWKS URL.
    #[arg(long, env = "JWT_EDGE_JWKS_URL")]
    jwks_url: String,
    /// Required `iss` claim (not checked when empty).
    #[arg(long, env = "JWT_EDGE_ISSUER", default_value = "")]
    issuer: String,
    /// Seconds between periodic JWKS re-reads.
    #[arg(long, env = "JWT_EDGE_REFRESH_SECS", default_value_t = 60)]
    refresh_secs: u64,
    /// Minimum milliseconds between JWKS re-reads caused by an unknown `kid`.
    #[arg(long, env = "JWT_EDGE_UNKNOWN_KID_REFRESH_MS", default_value_t = 1000)]
    unknown_kid_refresh_ms: u64,
}

/// One verification key of the provider's JWKS.
struct Key {
    decoding: DecodingKey,
    validation: Validation,
}

/// The provider's keys by `kid`, swapped whole on every re-read.
struct Keys {
    by_kid: ArcSwap<HashMap<String, Key>>,
    http: reqwest::Client,
    url: String,
    issuer: String,
    last_fetch: tokio::sync::Mutex<Instant>,
    min_interval: Duration,
}

impl Keys {
    async fn fetch(&self) -> anyhow::Result<()> {
        let set: JwkSet = self
            .http
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut by_kid = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = &jwk.common.key_id else {
                continue;
            };
            let Some(algorithm) = signature_algorithm(jwk) else {
                continue; // an encryption key (RSA-OAEP) or an algorithm we do not verify
            };
            let Ok(decoding) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let mut validation = Validation::new(algorithm);
            validation.validate_aud = false;
            if !self.issuer.is_empty() {
                validation.set_issuer(&[&self.issuer]);
            }
            by_kid.insert(
                kid.clone(),
                Key {
                    decoding,
                    validation,
                },
            );
        }
        self.by_kid.store(Arc::new(by_kid));
        Ok(())
    }

    /// Re-reads the JWKS for an unknown `kid`, at most once per `min_interval`.
    async fn refresh_for_unknown_kid(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.elapsed() >= self.min_interval {
            if let Err(e) = self.fetch().await {
                eprintln!("jwks refresh failed: {e:#}");
            }
            *last = Instant::now();
        }
    }

    async fn verify(&self, token: &str) -> Result<(String, String), String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        let kid = header.kid.ok_or("no kid")?;
        if !self.by_kid.load().contains_key(&kid) {
            self.refresh_for_unknown_kid().await;
        }
        let keys = self.by_kid.load();
        let key = keys.get(&kid).ok_or_else(|| format!("unknown kid {kid}"))?;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.decoding, &key.validation)
            .map_err(|e| e.to_string())?;
        let sub = data.claims["sub"].as_str().unwrap_or_default().to_owned();
        Ok((sub, kid))
    }
}

/// The JWK's `alg`, or the usual one for its key type when `alg` is absent.
fn signature_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    match jwk.common.key_algorithm {
        Some(alg) => Algorithm::try_from(alg).ok(),
        None => match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(_) => Some(Algorithm::ES256),
            AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
            AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
            _ => None,
        },
    }
}

fn respond(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    res
}

async fn handle(
    keys: Arc<Keys>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return Ok(respond(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "missing bearer token"}),
        ));
    };
    Ok(match keys.verify(token).await {
        Ok((sub, kid)) => respond(StatusCode::OK, serde_json::json!({"sub": sub, "kid": kid})),
        Err(e) => respond(StatusCode::UNAUTHORIZED, serde_json::json!({"error": e})),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // reqwest may be built with `rustls-no-provider` (workspace feature unification).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let keys = Arc::new(Keys {
        by_kid: ArcSwap::from_pointee(HashMap::new()),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?,
        url: args.jwks_url.clone(),
        issuer: args.issuer.clone(),
        last_fetch: tokio::sync::Mutex::new(Instant::now()),
        min_interval: Duration::from_millis(args.unknown_kid_refresh_ms),
    });
    keys.fetch().await?;
    let periodic = keys.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(args.refresh_secs.max(1)));
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = periodic.fetch().await {
                eprintln!("jwks refresh failed: {e:#}");
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("jwt-edge listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let keys = keys.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(keys.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
