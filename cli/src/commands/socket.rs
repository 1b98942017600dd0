//! Opening a WebSocket to the gateway or the chat service with the session's token (shared by
//! `chat connect` and `watch`).

use authstack_protocol::{ErrorBody, ErrorCode};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::context::{Context, Service};
use crate::error::CliError;

/// An open socket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a socket could not be opened.
pub enum Reconnect {
    /// Worth another try later (network, server restarting, token just refreshed).
    After(String),
    /// Hopeless (not allowed, logged out): stop.
    Never(CliError),
}

/// Opens `path_and_query` on `service` with `Authorization: Bearer` (refreshing an expired
/// token first).
pub async fn open(
    ctx: &mut Context,
    service: Service,
    path_and_query: &str,
) -> Result<Socket, Reconnect> {
    let token = ctx.access_token().await.map_err(Reconnect::Never)?;
    let base = ctx.base(service).to_owned();
    let (ws_base, tls) = match base.split_once("://") {
        Some(("https", rest)) => (format!("wss://{rest}"), true),
        Some((_, rest)) => (format!("ws://{rest}"), false),
        None => (format!("ws://{base}"), false),
    };
    let mut request = format!("{ws_base}{path_and_query}")
        .into_client_request()
        .map_err(|e| Reconnect::Never(CliError::Usage(format!("URL {base}: {e}"))))?;
    let auth = format!("Bearer {token}")
        .parse()
        .map_err(|_| Reconnect::Never(CliError::Local("the stored token is not ASCII".into())))?;
    request.headers_mut().insert("authorization", auth);
    let connector = match tls {
        true => Some(Connector::Rustls(
            crate::tls::client_config().map_err(Reconnect::Never)?,
        )),
        false => None,
    };
    match tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status();
            let error = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| serde_json::from_value::<ErrorBody>(v["error"].clone()).ok());
            match error {
                Some(body) if body.code == ErrorCode::TokenExpired => {
                    ctx.refresh(&token).await.map_err(Reconnect::Never)?;
                    Err(Reconnect::After("token refreshed".into()))
                }
                Some(body) if status.is_client_error() => Err(Reconnect::Never(CliError::Api {
                    body,
                    request_id: None,
                })),
                _ => Err(Reconnect::After(format!("status {status}"))),
            }
        }
        Err(e) => Err(Reconnect::After(e.to_string())),
    }
}

/// The next frame of `socket`; never ready while there is none.
pub async fn next(
    socket: &mut Option<Socket>,
) -> Option<Result<tungstenite::Message, tungstenite::Error>> {
    match socket {
        Some(s) => futures::StreamExt::next(s).await,
        None => std::future::pending().await,
    }
}
