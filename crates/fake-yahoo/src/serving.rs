//! The handle of a local fake server (the fake Yahoo's, the fake Tiingo's): where it listens,
//! and stopping it, gracefully on [`Serving::shutdown`] or by signal on drop.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A server task serving one router on one listener.
pub struct Serving {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Serving {
    /// Serves `app` on `listener` (TCP_NODELAY: small responses must not wait for Nagle's
    /// algorithm) on the current Tokio runtime until `stop` says `true`; the app's state may
    /// hold receivers of `stop` to cut its sleeps short.
    ///
    /// # Errors
    /// When the listener's address cannot be read.
    pub fn spawn(
        listener: TcpListener,
        app: Router,
        stop: watch::Sender<bool>,
    ) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let mut signal = stop.subscribe();
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // Err means the handle is gone: stop as well.
                    let _ = signal.wait_for(|stop| *stop).await;
                })
                .await
        });
        Ok(Serving {
            addr,
            stop,
            task: Some(task),
        })
    }

    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, no trailing slash.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish (at most 5 s), then returns.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        // The server task finishes by itself once it sees the signal.
        self.stop.send_replace(true);
    }
}
