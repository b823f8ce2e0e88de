//! The HTTP listener: hyper's HTTP/1 connections, each watched so that a client cannot hold one
//! without using it.
//!
//! A connection is in one of three phases. *Idle*: no request in progress (just opened, or kept
//! alive between requests); it is closed after `idle_timeout`. *Head*: a request has begun to
//! arrive (bytes came while idle); its headers must be complete within `header_read_timeout`,
//! however slowly they trickle in (slowloris). *Busy*: a request is being served; not timed
//! here. An upgraded connection (the WebSocket sync endpoint) leaves this watch: pings keep it.

use crate::config::ConnectionLimits;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long an HTTP connection may take over what.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

impl Timeouts {
    pub fn of(limits: &ConnectionLimits) -> Self {
        Timeouts {
            header_read: Duration::from_millis(limits.header_read_timeout.as_millis()),
            idle: Duration::from_millis(limits.idle_timeout.as_millis()),
        }
    }
}

/// Serve `routes` on `listener` until `stop`; then finish the requests in progress and return.
pub async fn serve(
    listener: TcpListener,
    routes: Router,
    timeouts: Timeouts,
    stop: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, typically: wait a little rather than spin.
                tracing::warn!(error = %e, "could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(
            stream,
            addr,
            routes.clone(),
            timeouts,
            stop.clone(),
        ));
    }
    connections.close();
    connections.wait().await;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle { since: Instant },
    Head { since: Instant },
    Busy { requests: usize },
}

/// What a connection is doing, updated by its socket and its service.
#[derive(Debug)]
struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            phase: Mutex::new(Phase::Idle {
                since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn set(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        let next = change(*phase);
        if next != *phase {
            *phase = next;
            self.changed.notify_one();
        }
    }

    fn bytes_arrived(&self) {
        self.set(|phase| match phase {
            Phase::Idle { .. } => Phase::Head {
                since: Instant::now(),
            },
            other => other,
        });
    }

    fn request_started(&self) {
        self.set(|phase| match phase {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            _ => Phase::Busy { requests: 1 },
        });
    }

    fn request_done(&self) {
        self.set(|phase| match phase {
            Phase::Busy { requests } if requests > 1 => Phase::Busy {
                requests: requests - 1,
            },
            _ => Phase::Idle {
                since: Instant::now(),
            },
        });
    }

    /// When the connection is to be closed if nothing changes, and why.
    fn deadline(&self, timeouts: Timeouts) -> Option<(Instant, &'static str)> {
        match *self.phase.lock().unwrap_or_else(|e| e.into_inner()) {
            Phase::Idle { since } => Some((since + timeouts.idle, "idle")),
            Phase::Head { since } => Some((since + timeouts.header_read, "headers too slow")),
            Phase::Busy { .. } => None,
        }
    }
}

/// A socket that tells its [`Activity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    routes: Router,
    timeouts: Timeouts,
    stop: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let routes = TowerToHyperService::new(routes);
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        use hyper::service::Service;
        request.extensions_mut().insert(ConnectInfo(addr));
        service_activity.request_started();
        let response = routes.call(request);
        let activity = service_activity.clone();
        async move {
            let response = response.await;
            activity.request_done();
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The phases above time the headers; hyper's own timer would also count idle time.
    builder.header_read_timeout(None);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let deadline = activity.deadline(timeouts);
        let expiry = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%addr, error = %e, "an HTTP connection ended with an error");
                }
                return;
            }
            () = activity.changed.notified() => {}
            () = expiry => {
                if let Some((at, why)) = activity.deadline(timeouts)
                    && at <= Instant::now()
                {
                    tracing::debug!(%addr, why, "closed an HTTP connection");
                    return;
                }
            }
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
