//! The baseline: a plain hyper 1.x HTTP/1.1 hello-world server as hyper's examples write it
//! (multi-threaded tokio, keep-alive). With `--server gateway`, the same answer comes from the
//! gateway's own server loop (`authstack_http::server` with the gateway's defaults: its worker
//! threads, limits and an axum router with this one route): the transport the gateway runs on,
//! without its middleware and handlers.

use std::convert::Infallible;
use std::net::SocketAddr;

use clap::Parser;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Parser)]
struct Args {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Which server loop answers.
    #[arg(long, value_enum, default_value_t = Server::Hyper)]
    server: Server,
}

/// The server loop of the hello-world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Server {
    /// hyper's `serve_connection` per accepted connection, on the multi-threaded runtime.
    Hyper,
    /// The gateway's `server::serve` with its default worker threads.
    Gateway,
}

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"{\"hello\":\"world\"}",
    ))))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("hello listening on {}", listener.local_addr()?);
    if args.server == Server::Gateway {
        let router =
            axum::Router::new().route("/", axum::routing::get(|| async { r#"{"hello":"world"}"# }));
        // The gateway's defaults: its worker threads, connection limit and timeouts.
        let limits = gateway::Config::with_defaults().server_limits();
        let never = tokio_util::sync::CancellationToken::new();
        authstack_http::server::serve(listener, router, limits, never).await?;
        return Ok(());
    }
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(hello))
                .await;
        });
    }
}
