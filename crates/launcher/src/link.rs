//! A network link that a test can cut: a TCP proxy on loopback between a
//! client (a service, a NATS node's route) and a server.
//!
//! Cut, the link carries nothing either way but closes nothing, as a
//! network that drops every packet does: each end notices only by its own
//! timeouts (the NATS client's pings, JetStream's heartbeats, a route's
//! pings). Bytes written meanwhile wait in the kernel's buffers, as TCP
//! retransmits them, and go through once the link is healed, if the ends
//! still hold the connection. A connection opened while the link is cut is
//! accepted but answered by nobody, as a connection attempt into a
//! partition is.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A TCP proxy to `target` that can be cut and healed; it stops when
/// dropped, closing every connection it carries.
#[derive(Debug)]
pub struct Link {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Link {
    /// Listens on a free loopback port, forwarding every connection to
    /// `target`. On the current tokio runtime.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (up, _) = watch::channel(true);
        let carried = up.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                connections.spawn(carry(client, target, carried.subscribe()));
                // Reap the finished ones as it goes.
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Self { addr, up, task })
    }

    /// Where clients connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `nats://` and the link's address.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Carries nothing more, either way, until [`Link::heal`].
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Carries again.
    pub fn heal(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection, from `client` to `target`, while the link carries it.
async fn carry(client: TcpStream, target: SocketAddr, mut up: watch::Receiver<bool>) {
    // Into a partition, a connection is never answered.
    if up.wait_for(|up| *up).await.is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = pipe(client_read, server_write, up.clone()) => {}
        () = pipe(server_read, client_write, up) => {}
    }
}

/// Copies from `from` to `to` while the link is up; while it is cut,
/// reads nothing, so what is sent waits in the kernel's buffers.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut up: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if up.wait_for(|up| *up).await.is_err() {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            // Cut while waiting to read: stop reading.
            _ = up.wait_for(|up| !*up) => continue,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just before a cut are held until the link heals.
        if up.wait_for(|up| *up).await.is_err() || to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn echo(stream: &mut TcpStream, text: &[u8]) -> Option<Vec<u8>> {
        stream.write_all(text).await.unwrap();
        let mut back = vec![0u8; text.len()];
        tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut back))
            .await
            .ok()?
            .ok()?;
        Some(back)
    }

    #[tokio::test]
    async fn a_cut_link_carries_nothing_and_a_healed_one_delivers_what_waited() {
        let link = Link::start(echo_server().await).await.unwrap();
        let mut stream = TcpStream::connect(link.addr()).await.unwrap();
        assert_eq!(
            echo(&mut stream, b"one").await.as_deref(),
            Some(&b"one"[..])
        );

        link.cut();
        assert_eq!(
            echo(&mut stream, b"two").await,
            None,
            "nothing crosses a cut"
        );
        link.heal();
        let mut back = vec![0u8; 3];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(
            back, b"two",
            "what was sent during the cut arrives after it"
        );
        assert_eq!(
            echo(&mut stream, b"six").await.as_deref(),
            Some(&b"six"[..])
        );
    }

    #[tokio::test]
    async fn a_connection_opened_while_cut_is_answered_only_once_healed() {
        let link = Link::start(echo_server().await).await.unwrap();
        link.cut();
        let mut stream = TcpStream::connect(link.addr()).await.unwrap();
        assert_eq!(echo(&mut stream, b"hi").await, None);
        link.heal();
        let mut back = vec![0u8; 2];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(back, b"hi");
    }
}
