//! A loopback TCP proxy whose connections a test can cut, to simulate a broker that drops
//! connections or goes away, without disturbing anything else using the real broker; or
//! silence, to simulate a peer that vanished without a reset (a crashed node).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy to one upstream address.
pub struct TcpProxy {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    epoch: watch::Sender<u64>,
    silence: watch::Sender<u64>,
}

impl TcpProxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let down = Arc::new(AtomicBool::new(false));
        let (epoch, _) = watch::channel(0u64);
        let (silence, _) = watch::channel(0u64);
        let proxy = TcpProxy {
            addr,
            down: down.clone(),
            epoch: epoch.clone(),
            silence: silence.clone(),
        };
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if down.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = epoch.subscribe();
                let mut silenced = silence.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                        _ = silenced.changed() => swallow(client, server).await,
                    }
                });
            }
        });
        Ok(proxy)
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// An AMQP URL through this proxy.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// Drops every open connection (clients see the socket close).
    pub fn cut(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    /// While down, existing connections are cut and new ones closed at once.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.cut();
        }
    }

    /// Partitions the network without a reset: every open connection goes silent for good
    /// (what either end sends is swallowed, nothing arrives, nothing is closed — as when the
    /// host at the other end crashed), and new connections are refused (as a Kubernetes
    /// Service without endpoints refuses them) until `set_down(false)`. Only a peer that
    /// notices the silence by itself, and reconnects, gets through again.
    pub fn partition(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.silence.send_modify(|e| *e += 1);
    }
}

/// Reads and discards both directions until both ends give up.
async fn swallow(mut client: TcpStream, mut server: TcpStream) {
    let (mut client_in, _client_out) = client.split();
    let (mut server_in, _server_out) = server.split();
    let mut sink = (tokio::io::sink(), tokio::io::sink());
    let _ = tokio::join!(
        tokio::io::copy(&mut client_in, &mut sink.0),
        tokio::io::copy(&mut server_in, &mut sink.1),
    );
}
