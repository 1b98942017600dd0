//! One socket: authentication, the read loop (control frames, RPC calls, pings, deadlines) and
//! the writer task draining the socket's bounded queue.

use std::sync::Arc;
use std::time::Duration;

use authstack_protocol::model::ROLE_ADMIN;
use authstack_protocol::rpc::{Call, CallContext, RpcRequest, Secret};
use authstack_protocol::ws::{
    CallFrame, ClientFrame, CloseCode, MAX_TOPICS, ServerFrame, allowed_over_socket,
    default_topics, is_valid_topic,
};
use authstack_protocol::{ErrorBody, ErrorCode, FieldError, validate};
use authstack_telemetry::InRequest;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use crate::auth;
use crate::error::frame_error;
use crate::request_id::RequestContext;
use crate::state::AppState;
use crate::token_cache::VerifiedToken;
use crate::ws_hub::{Closer, Outbound, Subscription};

/// How long the gateway tries to deliver its close frame (and what was queued before it).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long it waits for the client's closing handshake after its own close frame.
const LINGER: Duration = Duration::from_secs(2);

/// Runs one socket until it closes.
pub(super) async fn run(
    state: AppState,
    socket: WebSocket,
    ctx: RequestContext,
    presented: Option<Result<String, ErrorBody>>,
) {
    let (sink, mut stream) = socket.split();
    let (queue, outbound) = mpsc::channel(state.config.ws_send_buffer as usize);
    let closer = Arc::new(Closer::default());
    let writer = tokio::spawn(InRequest::new(
        ctx.request_id.clone(),
        write_loop(sink, outbound, closer.clone()),
    ));
    metrics::gauge!("authstack_gateway_ws_connections").increment(1.0);
    match state.ws_slots.clone().try_acquire_owned() {
        Ok(slot) => {
            let reader = Reader {
                state: state.clone(),
                ctx,
                queue,
                closer: closer.clone(),
                _slot: slot,
            };
            reader.serve(&mut stream, presented).await;
        }
        Err(_) => {
            metrics::counter!("authstack_gateway_ws_refused_total").increment(1);
            closer.close(
                CloseCode::TryAgainLater,
                "this gateway holds its maximum of sockets",
            );
        }
    }
    // The reader is done: the writer sends the close frame, then the client's handshake is
    // awaited briefly so the close frame is not lost to a reset.
    let _ = writer.await;
    let _ = tokio::time::timeout(LINGER, async {
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    metrics::gauge!("authstack_gateway_ws_connections").decrement(1.0);
}

fn to_message(m: Outbound) -> Message {
    match m {
        Outbound::Text(t) => Message::Text(t),
        Outbound::Ping => Message::Ping(Default::default()),
    }
}

/// Sends queued frames until the socket closes; then the close frame.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut outbound: mpsc::Receiver<Outbound>,
    closer: Arc<Closer>,
) {
    loop {
        let next = tokio::select! {
            biased;
            end = closer.closed() => return finish(sink, outbound, end).await,
            m = outbound.recv() => m,
        };
        let Some(m) = next else {
            return;
        };
        tokio::select! {
            biased;
            sent = sink.send(to_message(m)) => if sent.is_err() {
                closer.end();
                return;
            },
            end = closer.closed() => return finish(sink, outbound, end).await,
        }
    }
}

/// Delivers what is queued (unless the client was too slow for it) and the close frame.
async fn finish(
    mut sink: SplitSink<WebSocket, Message>,
    mut outbound: mpsc::Receiver<Outbound>,
    end: Option<(CloseCode, String)>,
) {
    let Some((code, reason)) = end else {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
        return;
    };
    metrics::counter!("authstack_gateway_ws_closed_total", "code" => code.code().to_string())
        .increment(1);
    tracing::info!(code = code.code(), reason = %reason, "closing WebSocket");
    let deliver = async {
        if code != CloseCode::TooSlow {
            while let Ok(m) = outbound.try_recv() {
                sink.send(to_message(m)).await?;
            }
        }
        let frame = CloseFrame {
            code: code.code(),
            reason: reason.into(),
        };
        sink.send(Message::Close(Some(frame))).await
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, deliver).await;
}

/// Why a presented token was not accepted.
type Refusal = (CloseCode, String);

/// The token in force on a socket.
struct Identity {
    token: Arc<VerifiedToken>,
    raw: Secret,
    account: Uuid,
}

struct Reader {
    state: AppState,
    ctx: RequestContext,
    queue: mpsc::Sender<Outbound>,
    closer: Arc<Closer>,
    /// Held while the socket is open (`GATEWAY_WS_MAX_SOCKETS`).
    _slot: OwnedSemaphorePermit,
}

/// What the read loop does with a client frame.
enum Parsed {
    Control(ClientFrame),
    Call(CallFrame),
}

fn parse(text: &str) -> Result<Parsed, ErrorBody> {
    let invalid = |e: serde_json::Error| {
        ErrorBody::validation(vec![FieldError::new(
            "frame",
            "invalid",
            format!("not a valid frame: {e}"),
        )])
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(invalid)?;
    if value.get("method").is_some() {
        serde_json::from_value(value)
            .map(Parsed::Call)
            .map_err(invalid)
    } else {
        serde_json::from_value(value)
            .map(Parsed::Control)
            .map_err(invalid)
    }
}

/// Whether a read error is tungstenite's "message too long".
fn too_big(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(tungstenite::Error::Capacity(_)) = s.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Queues a frame for the writer, waiting for room: the client's own requests and their
/// answers are held back (the socket is not read meanwhile) rather than dropped.
async fn enqueue(queue: &mpsc::Sender<Outbound>, closer: &Closer, frame: &ServerFrame) {
    let Ok(text) = serde_json::to_string(frame) else {
        return;
    };
    tokio::select! {
        _ = queue.send(Outbound::Text(text.into())) => {}
        _ = closer.closed() => {}
    }
}

impl Reader {
    async fn send(&self, frame: &ServerFrame) {
        enqueue(&self.queue, &self.closer, frame).await;
    }

    async fn send_error(&self, body: &ErrorBody, request_id: &str) {
        self.send(&ServerFrame::Error {
            error: frame_error(body, request_id),
        })
        .await;
    }

    async fn verify(&self, token: &str) -> Result<Identity, Refusal> {
        let refused = |e: ErrorBody| {
            let code = match e.code {
                ErrorCode::TokenExpired => CloseCode::TokenExpired,
                ErrorCode::RpcUnavailable => CloseCode::TryAgainLater,
                _ => CloseCode::Unauthenticated,
            };
            (code, e.message)
        };
        let token = auth::sized(token).map_err(|e| refused(e.0))?;
        let verified = auth::authenticate(&self.state, token)
            .await
            .map_err(|e| refused(e.0))?;
        let Some(account) = verified.account_id else {
            return Err((
                CloseCode::Unauthenticated,
                "token subject is not an account id".into(),
            ));
        };
        Ok(Identity {
            token: verified,
            raw: Secret(token.to_owned()),
            account,
        })
    }

    /// The first token: presented with the upgrade, or the first frame within the timeout.
    async fn first_identity(
        &self,
        stream: &mut SplitStream<WebSocket>,
        presented: Option<Result<String, ErrorBody>>,
    ) -> Result<Identity, Refusal> {
        match presented {
            Some(Ok(token)) => return self.verify(&token).await,
            Some(Err(e)) => return Err((CloseCode::Unauthenticated, e.message)),
            None => {}
        }
        let timeout = Duration::from_millis(self.state.config.ws_auth_timeout_ms);
        let first = tokio::time::timeout(timeout, async {
            loop {
                match stream.next().await {
                    Some(Ok(Message::Text(t))) => return Some(Ok(t)),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Err(e)) if too_big(&e) => return Some(Err(CloseCode::MessageTooBig)),
                    _ => return None,
                }
            }
        })
        .await;
        let text = match first {
            Err(_) => {
                return Err((
                    CloseCode::Unauthenticated,
                    format!("no auth frame within {} ms", timeout.as_millis()),
                ));
            }
            Ok(None) => return Err((CloseCode::Unauthenticated, String::new())),
            Ok(Some(Err(code))) => return Err((code, code.reason().into())),
            Ok(Some(Ok(t))) => t,
        };
        match parse(text.as_str()) {
            Ok(Parsed::Control(ClientFrame::Auth { access_token })) => {
                self.verify(access_token.expose()).await
            }
            _ => Err((
                CloseCode::Unauthenticated,
                r#"the first frame must be {"type":"auth","access_token":"…"}"#.into(),
            )),
        }
    }

    async fn serve(
        self,
        stream: &mut SplitStream<WebSocket>,
        presented: Option<Result<String, ErrorBody>>,
    ) {
        let mut identity = match self.first_identity(stream, presented).await {
            Ok(i) => i,
            Err((code, reason)) => {
                metrics::counter!("authstack_gateway_ws_auth_refused_total").increment(1);
                let reason = if reason.is_empty() {
                    code.reason().to_owned()
                } else {
                    reason
                };
                self.closer.close(code, reason);
                return;
            }
        };
        let mut topics = default_topics();
        let mut all_accounts = false;
        let subscription = |i: &Identity, topics: &[String], all: bool| Subscription {
            account: i.account,
            session: i.token.session_id,
            kid: i.token.kid.clone(),
            topics: topics.to_vec(),
            all_accounts: all,
        };
        // `ready` first: events are queued only once the socket is registered.
        self.ready(&identity, &topics, all_accounts).await;
        let registration = self.state.ws.register(
            subscription(&identity, &topics, all_accounts),
            self.queue.clone(),
            self.closer.clone(),
        );
        // A revocation dispatched before the registration is in the deny list by now.
        if self
            .state
            .revocations
            .denies(Some(identity.account), identity.token.session_id)
        {
            self.closer.close(
                CloseCode::SessionRevoked,
                CloseCode::SessionRevoked.reason(),
            );
            return;
        }
        tracing::info!(account = %identity.account, "WebSocket authenticated");

        let config = &self.state.config;
        let leeway = self.state.leeway_secs;
        let deadline = |i: &Identity| {
            let left = (i.token.claims.exp + leeway - chrono::Utc::now().timestamp()).max(0);
            Instant::now() + Duration::from_secs(left as u64)
        };
        let expiry = tokio::time::sleep_until(deadline(&identity));
        tokio::pin!(expiry);
        let ping_every = Duration::from_secs(config.ws_ping_interval_secs);
        let idle_timeout = Duration::from_secs(config.ws_idle_timeout_secs);
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        let mut last_seen = Instant::now();
        let calls = Arc::new(Semaphore::new(config.ws_max_calls_in_flight as usize));
        loop {
            tokio::select! {
                _ = self.closer.closed() => return,
                _ = self.state.shutdown.cancelled() => {
                    self.closer.close(CloseCode::GoingAway, CloseCode::GoingAway.reason());
                }
                _ = &mut expiry => {
                    self.closer.close(CloseCode::TokenExpired, CloseCode::TokenExpired.reason());
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() > idle_timeout {
                        self.closer.close(CloseCode::IdleTimeout, CloseCode::IdleTimeout.reason());
                    } else {
                        // A full queue already waits for the client; no ping needed.
                        let _ = self.queue.try_send(Outbound::Ping);
                    }
                }
                incoming = stream.next() => {
                    last_seen = Instant::now();
                    let text = match incoming {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Binary(_))) => {
                            let e = ErrorBody::new(ErrorCode::ValidationFailed, "binary frames are not accepted: send JSON text frames");
                            self.send_error(&e, &self.ctx.request_id).await;
                            continue;
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Err(e)) if too_big(&e) => {
                            self.closer.close(CloseCode::MessageTooBig, format!("frames are limited to {} bytes", config.ws_max_message_bytes));
                            continue;
                        }
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                            self.closer.end();
                            return;
                        }
                    };
                    match parse(text.as_str()) {
                        Err(e) => self.send_error(&e, &self.ctx.request_id).await,
                        Ok(Parsed::Call(call)) => self.call(call, &identity, &calls).await,
                        Ok(Parsed::Control(ClientFrame::Auth { access_token })) => {
                            match self.verify(access_token.expose()).await {
                                Ok(next) if next.account == identity.account => {
                                    identity = next;
                                    registration.update(subscription(&identity, &topics, all_accounts));
                                    expiry.as_mut().reset(deadline(&identity));
                                    self.ready(&identity, &topics, all_accounts).await;
                                }
                                Ok(_) => self.closer.close(
                                    CloseCode::Unauthenticated,
                                    "an in-band token must belong to the same account",
                                ),
                                Err((_, message)) => {
                                    let e = ErrorBody::new(ErrorCode::InvalidToken, message);
                                    self.send_error(&e, &self.ctx.request_id).await;
                                }
                            }
                        }
                        Ok(Parsed::Control(ClientFrame::Subscribe { topics: add, all_accounts: all })) => {
                            match self.subscribe(&identity, &topics, &add, all) {
                                Ok(next) => {
                                    topics = next;
                                    all_accounts |= all;
                                    registration.update(subscription(&identity, &topics, all_accounts));
                                    self.send(&ServerFrame::Subscribed { topics: topics.clone(), all_accounts }).await;
                                }
                                Err(e) => self.send_error(&e, &self.ctx.request_id).await,
                            }
                        }
                        Ok(Parsed::Control(ClientFrame::Unsubscribe { topics: remove })) => {
                            topics.retain(|t| !remove.contains(t));
                            registration.update(subscription(&identity, &topics, all_accounts));
                            self.send(&ServerFrame::Subscribed { topics: topics.clone(), all_accounts }).await;
                        }
                    }
                }
            }
        }
    }

    async fn ready(&self, identity: &Identity, topics: &[String], all_accounts: bool) {
        self.send(&ServerFrame::Ready {
            account_id: identity.account,
            session_id: identity.token.session_id,
            expires_at: identity.token.claims.exp,
            topics: topics.to_vec(),
            all_accounts,
        })
        .await;
    }

    /// The topics after adding `add`, or why not.
    fn subscribe(
        &self,
        identity: &Identity,
        current: &[String],
        add: &[String],
        all_accounts: bool,
    ) -> Result<Vec<String>, ErrorBody> {
        if all_accounts && !identity.token.claims.has_role(ROLE_ADMIN) {
            return Err(ErrorBody::new(
                ErrorCode::Forbidden,
                "only administrators may subscribe to every account",
            ));
        }
        let bad: Vec<FieldError> = add
            .iter()
            .filter(|t| !is_valid_topic(t))
            .map(|t| {
                FieldError::new(
                    "topics",
                    "invalid_format",
                    format!("`{t}` is not a topic pattern (words of a-z, 0-9, _; `*`, `#`)"),
                )
            })
            .collect();
        if !bad.is_empty() {
            return Err(ErrorBody::validation(bad));
        }
        let mut next = current.to_vec();
        for t in add {
            if !next.contains(t) {
                next.push(t.clone());
            }
        }
        if next.len() > MAX_TOPICS {
            return Err(ErrorBody::validation(vec![FieldError::new(
                "topics",
                "too_many",
                format!("at most {MAX_TOPICS} topics per socket"),
            )]));
        }
        Ok(next)
    }

    /// Runs one RPC call in its own task; the reply goes through the socket's queue. At the
    /// limit of calls in flight, the socket is not read until one finishes.
    async fn call(&self, frame: CallFrame, identity: &Identity, calls: &Arc<Semaphore>) {
        let request_id = self.state.request_ids.next();
        let id = frame.id;
        let checked = self.check_call(frame.method, frame.params, &id, identity);
        let call = match checked {
            Ok(call) => call,
            Err(body) => {
                let error = Some(frame_error(&body, &request_id));
                let reply = ServerFrame::Reply {
                    id,
                    result: None,
                    error,
                };
                return self.send(&reply).await;
            }
        };
        let permit = tokio::select! {
            p = calls.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = self.closer.closed() => return,
        };
        metrics::counter!("authstack_gateway_ws_calls_total", "method" => call.method())
            .increment(1);
        let context = CallContext {
            request_id: request_id.to_string(),
            access_token: Some(identity.raw.clone()),
            client_ip: self.ctx.client_ip.map(|ip| ip.to_string()),
        };
        let state = self.state.clone();
        let queue = self.queue.clone();
        let closer = self.closer.clone();
        let span = tracing::info_span!("ws_call", request_id = %request_id, method = call.method());
        tokio::spawn(InRequest::new(
            self.ctx.request_id.clone(),
            async move {
                let (result, error) = match state.call(&call, context).await {
                    Ok(raw) => (Some(raw), None),
                    Err(e) => (None, Some(frame_error(&e.0, &request_id))),
                };
                let reply = ServerFrame::Reply { id, result, error };
                enqueue(&queue, &closer, &reply).await;
                drop(permit);
            }
            .instrument(span),
        ));
    }

    /// Decodes and authorizes a call like REST would.
    fn check_call(
        &self,
        method: String,
        params: serde_json::Value,
        id: &serde_json::Value,
        identity: &Identity,
    ) -> Result<Call, ErrorBody> {
        if !(id.is_string() || id.is_number()) {
            return Err(ErrorBody::validation(vec![FieldError::new(
                "id",
                "invalid_type",
                "id must be a string or a number",
            )]));
        }
        let request = RpcRequest {
            method,
            params,
            context: CallContext::default(),
        };
        // Omitted parameters are an empty object for methods that take optional ones.
        let call = request.decode().or_else(|e| {
            if request.params.is_null() {
                let empty = RpcRequest {
                    params: serde_json::json!({}),
                    ..request.clone()
                };
                empty.decode().map_err(|_| e)
            } else {
                Err(e)
            }
        })?;
        if !allowed_over_socket(&call) {
            return Err(ErrorBody::new(
                ErrorCode::NotImplemented,
                format!(
                    "`{}` is not available over the WebSocket: use the REST API",
                    call.method()
                ),
            ));
        }
        if call.requires_admin() && !identity.token.claims.has_role(ROLE_ADMIN) {
            return Err(ErrorBody::new(
                ErrorCode::Forbidden,
                "administrator role required",
            ));
        }
        validate::call(&call)?;
        Ok(call)
    }
}
