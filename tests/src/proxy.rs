//! A TCP proxy of a test's own on loopback that can turn the connections it carries half-open.
//!
//! A half-open connection is the silent network fault: a NAT or load-balancer entry dropped, a
//! peer host frozen, a partition. Nothing is closed (no FIN, no RST), bytes just stop, and new
//! connections work. [`FreezingProxy::freeze`] does that to every connection open at the
//! moment, while connections accepted afterwards are forwarded normally: what a worker must
//! survive by noticing, on its own deadlines, that its connections are dead and opening new ones.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Which bytes of a frozen connection stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freeze {
    /// Both ways: the peer seems to have vanished.
    Both,
    /// Only the backend's answers: requests still reach the backend (and take effect there),
    /// the client never hears back.
    Answers,
}

#[derive(Clone, Copy, Debug, Default)]
struct Frozen {
    /// Connections numbered below this are frozen.
    below: u64,
    mode: Option<Freeze>,
}

/// Forwards `127.0.0.1:port()` to a target; stops forwarding on [`freeze`](Self::freeze).
/// Dropping it closes every connection it holds.
pub struct FreezingProxy {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    frozen: watch::Sender<Frozen>,
    tasks: JoinSet<()>,
}

impl FreezingProxy {
    /// Listens on a free loopback port and forwards to `target` (`127.0.0.1:PORT`).
    pub async fn start(target: &str) -> Self {
        let target: SocketAddr = target.parse().expect("the proxy's target is an address");
        assert!(target.ip().is_loopback(), "the proxy forwards to loopback only");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let accepted = Arc::new(AtomicU64::new(0));
        let (frozen, _) = watch::channel(Frozen::default());
        let mut tasks = JoinSet::new();
        let (count, watch) = (accepted.clone(), frozen.clone());
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                let n = count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(target).await else { continue };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                connections.spawn(pump(n, cr, sw, watch.subscribe(), false));
                connections.spawn(pump(n, sr, cw, watch.subscribe(), true));
            }
        });
        Self { addr, accepted, frozen, tasks }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Turns every connection open now half-open (`mode` says which way bytes stop); later
    /// connections are forwarded normally.
    pub fn freeze(&self, mode: Freeze) {
        let below = self.accepted();
        self.frozen.send_replace(Frozen { below, mode: Some(mode) });
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Copies `from` to `to` until EOF, or until connection `n` is frozen in this direction: then
/// holds both sockets open, forwarding nothing, until the proxy is dropped.
async fn pump(
    n: u64,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<Frozen>,
    answers: bool,
) {
    let stops = |f: &Frozen| n < f.below && matches!((f.mode, answers), (Some(Freeze::Both), _) | (Some(Freeze::Answers), true));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if stops(&frozen.borrow()) {
            let _held = (from, to);
            return std::future::pending().await;
        }
        tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(len) => {
                    if to.write_all(&buf[..len]).await.is_err() {
                        return;
                    }
                }
            },
            changed = frozen.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
