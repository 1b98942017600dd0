//! The HTTP/1.1 server loop of every AuthStack HTTP service: hyper with the limits a public
//! endpoint needs.
//!
//! - a connection limit (a semaphore: at the limit, further clients wait in the listen backlog);
//! - a header read timeout: from the first byte of a request until its head is complete (a
//!   client that never finishes its headers is disconnected);
//! - an idle timeout: how long a connection may wait, without a byte, for its first or next
//!   request (closed gracefully);
//! - the body read timeout is the extractor's ([`crate::extract`]), answered with 408.
//!
//! Every request carries its peer address as axum's `ConnectInfo`. Shutdown stops accepting,
//! lets in-flight requests finish and closes idle connections.
//!
//! Connections are served by [`ConnectionWorkers`]: threads with a single-threaded runtime each
//! (the model of actix-web and of thread-per-core servers). The accept loop hands every new
//! connection to the worker with the fewest open ones, and the connection stays there: its
//! reads, handler and writes never wake another thread, which on a busy machine costs more than
//! the request itself (see docs/performance.md). With no workers configured, connections run on
//! the caller's runtime.
//!
//! Each service records the loop's metrics under names of its own ([`ServerMetrics`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

/// What [`serve`] serves: an axum `Router`, or a router wrapped in tower layers that apply to
/// every request (cheaper than `Router::layer`, which boxes the layer around each route).
pub trait HttpService:
    Service<Request, Response = Response, Error = Infallible, Future: Send> + Clone + Send + 'static
{
}

impl<S> HttpService for S where
    S: Service<Request, Response = Response, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static
{
}

/// The names a service's server loop records its metrics under.
#[derive(Debug, Clone, Copy)]
pub struct ServerMetrics {
    /// Gauge: connections being served.
    pub open_connections: &'static str,
    /// Counter, label `phase` (`header`, `idle`): connections closed because a request head
    /// did not arrive in time, or idle too long.
    pub timed_out: &'static str,
}

/// Connection limits and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Threads serving connections, each with a runtime of its own (0: the caller's runtime).
    pub workers: usize,
    /// Open connections at most.
    pub max_connections: usize,
    /// Time from a request's first byte until its head is complete.
    pub header_read_timeout: Duration,
    /// Time a connection may wait for its first or next request.
    pub idle_timeout: Duration,
    /// Where the loop's metrics go.
    pub metrics: ServerMetrics,
}

const NOT_STARTED: u64 = u64::MAX;

/// Worker threads when none are configured: two per CPU the process may use (its cgroup's CPU
/// limit counts), at most [`MAX_DEFAULT_WORKERS`]. On the 2-core reference machine, with the
/// load generator on the same cores, two per CPU served the gateway's `/api/v1/auth/session`
/// at ~160k req/s against ~120k with one per CPU and ~105k on the shared work-stealing runtime
/// (docs/performance.md).
pub fn default_workers() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (2 * cpus).min(MAX_DEFAULT_WORKERS)
}

/// The cap of [`default_workers`]: a pod without a CPU limit sees every core of its node, and
/// each worker keeps allocator caches of its own (the operator's gateway has a 256 MiB memory
/// limit). More can be configured.
pub const MAX_DEFAULT_WORKERS: usize = 16;

/// Activity of one connection, shared by its socket, its requests and its watchdog.
///
/// Requests and reads only record times in atomics; nothing wakes the watchdog per request.
/// Instead the watchdog never sleeps longer than the header read timeout at a time, so its
/// first look after a head starts comes before that head's deadline, and from then on it
/// sleeps until exactly that deadline.
struct Activity {
    started: Instant,
    /// Requests dispatched and not yet answered.
    in_flight: AtomicUsize,
    /// When (ms since `started`) the connection last became idle.
    idle_since_ms: AtomicU64,
    /// When (ms since `started`) the first byte of the next request arrived, or
    /// [`NOT_STARTED`].
    head_started_ms: AtomicU64,
}

/// What the watchdog does next.
enum Next {
    /// No deadline has passed; look again at this time.
    Recheck(Instant),
    /// The head must be complete by then, or the socket is closed.
    HeadDeadline(Instant),
    /// A new request must start by then, or the connection is closed gracefully.
    IdleDeadline(Instant),
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(NOT_STARTED),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.started + Duration::from_millis(ms)
    }

    /// Bytes arrived on the socket: the first ones after an idle period start a head.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started_ms.load(Ordering::Acquire) == NOT_STARTED
        {
            let _ = self.head_started_ms.compare_exchange(
                NOT_STARTED,
                self.now_ms(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    /// The deadline in force now, or when to look again (never later than a head that starts
    /// from now on could need).
    fn next(&self, limits: &Limits) -> Next {
        let look_again = Instant::now() + limits.header_read_timeout;
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Next::Recheck(look_again);
        }
        match self.head_started_ms.load(Ordering::Acquire) {
            NOT_STARTED => {
                let idle_deadline =
                    self.at(self.idle_since_ms.load(Ordering::Acquire)) + limits.idle_timeout;
                if idle_deadline <= look_again {
                    Next::IdleDeadline(idle_deadline)
                } else {
                    Next::Recheck(look_again)
                }
            }
            started => Next::HeadDeadline(self.at(started) + limits.header_read_timeout),
        }
    }
}

/// Marks a request in flight until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity
            .head_started_ms
            .store(NOT_STARTED, Ordering::Release);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .idle_since_ms
            .store(self.0.now_ms(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The client socket, reporting reads to the connection's [`Activity`].
struct WatchedStream {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.on_read();
        }
        result
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves `router` on `listener` until `shutdown`; returns when every connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: impl HttpService,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let workers = ConnectionWorkers::start(limits.workers, &router, limits, &shutdown)?;
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        metrics::gauge!(limits.metrics.open_connections)
            .set((limits.max_connections - permits.available_permits()) as f64);
        let slot = Slot {
            _permit: permit,
            worker_open: None,
        };
        match &workers {
            Some(w) => w.hand_over(stream, peer, slot),
            None => {
                tokio::spawn(serve_in_slot(
                    stream,
                    peer,
                    router.clone(),
                    limits,
                    shutdown.clone(),
                    slot,
                ));
            }
        }
    }
    // Wait for the connections still open (each closes once its last request is answered).
    let _ = permits.acquire_many(limits.max_connections as u32).await;
    if let Some(w) = workers {
        w.stop().await;
    }
    Ok(())
}

/// A connection's place: under the connection limit, and on its worker's count of open
/// connections, both given back when dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    worker_open: Option<Arc<AtomicUsize>>,
}

impl Slot {
    /// Counts the connection on a worker (instead of the one it was counted on).
    fn count_on(&mut self, open: &Arc<AtomicUsize>) {
        self.leave_worker();
        open.fetch_add(1, Ordering::Relaxed);
        self.worker_open = Some(open.clone());
    }

    fn leave_worker(&mut self) {
        if let Some(open) = self.worker_open.take() {
            open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.leave_worker();
    }
}

/// Serves a connection, then gives its slot back.
async fn serve_in_slot(
    stream: TcpStream,
    peer: SocketAddr,
    router: impl HttpService,
    limits: Limits,
    shutdown: CancellationToken,
    slot: Slot,
) {
    serve_connection(stream, peer, router, limits, shutdown).await;
    drop(slot);
}

/// A connection handed to a worker, with its slot.
struct Handover {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    slot: Slot,
}

struct Worker {
    queue: mpsc::UnboundedSender<Handover>,
    open: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

/// Threads serving connections, each on a single-threaded runtime of its own.
pub struct ConnectionWorkers {
    workers: Vec<Worker>,
}

impl ConnectionWorkers {
    /// Starts `count` workers (none for 0).
    fn start(
        count: usize,
        router: &impl HttpService,
        limits: Limits,
        shutdown: &CancellationToken,
    ) -> io::Result<Option<Self>> {
        if count == 0 {
            return Ok(None);
        }
        let mut workers = Vec::with_capacity(count);
        for i in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (queue, mut handovers) = mpsc::unbounded_channel::<Handover>();
            let open = Arc::new(AtomicUsize::new(0));
            let (router, shutdown) = (router.clone(), shutdown.clone());
            let thread = std::thread::Builder::new()
                .name(format!("http-worker-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        while let Some(h) = handovers.recv().await {
                            match TcpStream::from_std(h.stream) {
                                Ok(stream) => {
                                    let (router, shutdown) = (router.clone(), shutdown.clone());
                                    let serve = serve_in_slot(
                                        stream, h.peer, router, limits, shutdown, h.slot,
                                    );
                                    tokio::spawn(serve);
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "could not adopt a connection");
                                }
                            }
                        }
                    });
                })?;
            workers.push(Worker {
                queue,
                open,
                thread,
            });
        }
        Ok(Some(ConnectionWorkers { workers }))
    }

    /// Gives a connection to the worker with the fewest open connections (the next one if that
    /// worker is gone; with none left the connection is closed).
    fn hand_over(&self, stream: TcpStream, peer: SocketAddr, slot: Slot) {
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not hand a connection over");
                return;
            }
        };
        let mut order: Vec<&Worker> = self.workers.iter().collect();
        order.sort_by_key(|w| w.open.load(Ordering::Relaxed));
        let mut handover = Handover { stream, peer, slot };
        for worker in order {
            handover.slot.count_on(&worker.open);
            match worker.queue.send(handover) {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => handover = back,
            }
        }
        tracing::error!("every HTTP worker thread is gone; connection closed");
    }

    /// Lets the workers finish (after every connection closed) and waits for their threads.
    async fn stop(self) {
        for w in self.workers {
            drop(w.queue);
            let _ = tokio::task::spawn_blocking(move || w.thread.join()).await;
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: impl HttpService,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let guard = InFlight::start(&service_activity);
        req.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move {
            let response = router.oneshot(req.map(Body::new)).await;
            drop(guard);
            response
        }
    });
    let io = TokioIo::new(WatchedStream {
        inner: stream,
        activity: activity.clone(),
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut closing = false;
    let watchdog = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(watchdog);
    loop {
        let wake = match activity.next(&limits) {
            Next::Recheck(at) | Next::HeadDeadline(at) | Next::IdleDeadline(at) => at,
        };
        watchdog.as_mut().reset(wake.into());
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection closed with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = &mut watchdog => {
                // Re-evaluate: a request may have started or finished meanwhile.
                match activity.next(&limits) {
                    Next::HeadDeadline(at) if at <= Instant::now() => {
                        metrics::counter!(limits.metrics.timed_out, "phase" => "header").increment(1);
                        tracing::debug!(%peer, "request head not received in time; disconnecting");
                        return;
                    }
                    Next::IdleDeadline(at) if at <= Instant::now() && !closing => {
                        metrics::counter!(limits.metrics.timed_out, "phase" => "idle").increment(1);
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    Next::IdleDeadline(at) if at <= Instant::now() => {
                        // Gracefully closing did not finish in another idle period: drop it.
                        return;
                    }
                    _ => {}
                }
            }
        }
    }
}
