//! The daemon's HTTP listener, hardened for traffic nobody vouches for: a connection limit (one
//! over it is closed at once, so a flood costs a socket for a moment, not a task and buffers),
//! a deadline for the request head that also ends idle keep-alive connections, a total age
//! after which a connection is closed once its request is answered, and accept errors (too many
//! open files) that pause the listener instead of spinning or stopping it. Bodies are bounded
//! where they are read (`triggers::webhook::server`).

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// What one listener allows.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Time to send a request's head, and the longest a kept-alive connection may sit idle.
    pub head_timeout: Duration,
    /// A connection is closed after this long (gracefully: its request in progress is answered).
    pub max_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            head_timeout: Duration::from_secs(10),
            max_age: Duration::from_secs(120),
        }
    }
}

/// How long accepting pauses after an error such as too many open files.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);

/// Serves `router` on `listener` until `stop` fires, within `limits`, over TLS when `tls` is
/// given (the handshake must end within the head timeout). `log` receives a line on each new
/// kind of trouble (limit reached, accept failing), at most every 10 s each.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: CancellationToken,
    log: impl Fn(&str),
) {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let tasks = tokio_util::task::TaskTracker::new();
    let mut last_full: Option<tokio::time::Instant> = None;
    let mut last_error: Option<tokio::time::Instant> = None;
    let quiet = |last: &mut Option<tokio::time::Instant>| {
        let now = tokio::time::Instant::now();
        let speak = last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10));
        if speak {
            *last = Some(now);
        }
        speak
    };
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE/ENFILE and the like: the socket stays in the backlog; wait for
                // descriptors to free up rather than spin on it.
                if quiet(&mut last_error) {
                    log(&format!(
                        "http: cannot accept a connection ({e}); pausing the listener briefly"
                    ));
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let (stream, peer) = stream;
        let Ok(permit) = open.clone().try_acquire_owned() else {
            if quiet(&mut last_full) {
                log(&format!(
                    "http: {} connections open (the limit); closing new ones until some end",
                    limits.max_connections
                ));
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The client's address, for the dashboard's login throttle.
        let service = TowerToHyperService::new(
            router
                .clone()
                .layer(axum::Extension(crate::web::Peer(peer))),
        );
        let stop = stop.clone();
        let tls = tls.clone();
        tasks.spawn(async move {
            let _permit = permit;
            match tls {
                None => drive(stream, service, limits, stop).await,
                Some(acceptor) => {
                    let shaken =
                        tokio::time::timeout(limits.head_timeout, acceptor.accept(stream)).await;
                    // A failed or slow handshake ends the connection; nothing was served.
                    if let Ok(Ok(stream)) = shaken {
                        drive(stream, service, limits, stop).await;
                    }
                }
            }
        });
    }
    tasks.close();
    tasks.wait().await;
}

/// Serves one connection's requests until it closes, ages out or `stop` fires (gracefully: the
/// request in progress is answered).
async fn drive<I>(
    io: I,
    service: TowerToHyperService<axum::Router>,
    limits: Limits,
    stop: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let aged = tokio::time::sleep(limits.max_age);
    tokio::pin!(aged);
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            () = stop.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = &mut aged, if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}
