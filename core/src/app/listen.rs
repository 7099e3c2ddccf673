//! The accept loop: every connection the server takes passes here, bounded three ways
//! (issue 19's hostile clients: slowloris, idle floods, descriptor exhaustion).
//!
//! - **Open connections are capped** (`server.max_connections`): at the cap the loop stops
//!   accepting until one closes, so new clients wait in the kernel's backlog instead of the
//!   server running out of descriptors.
//! - **A request head must arrive in time** (`server.header_read_timeout_seconds`): HTTP/1
//!   connections that trickle their headers, or sit idle between kept-alive requests, are
//!   closed after it (hyper's own header-read timer).
//! - **Out of descriptors, the loop backs off** rather than retrying `accept` in a spin.
//!
//! Requests go to the same poem endpoint as before; shutdown stops accepting, lets in-flight
//! requests finish within the grace period, then closes what is left.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use poem::http::uri::Scheme;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint, Request};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Time a client has to send a complete request head (HTTP/1).
    pub header_read_timeout: Duration,
    /// Time in-flight requests get after shutdown starts.
    pub grace: Duration,
}

/// How long the loop waits before accepting again when the process is out of descriptors.
const NO_DESCRIPTOR_BACKOFF: Duration = Duration::from_millis(50);

fn out_of_descriptors(e: &std::io::Error) -> bool {
    // EMFILE (process) and ENFILE (system): accepting again at once fails the same way.
    matches!(e.raw_os_error(), Some(24) | Some(23))
}

/// Serves `endpoint` on `listener` until `shutdown` resolves, then drains.
pub async fn serve<E>(
    listener: TcpListener,
    endpoint: Arc<E>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) where
    E: Endpoint + 'static,
{
    let local = listener
        .local_addr()
        .map(|a| LocalAddr(Addr::SocketAddr(a)))
        .unwrap_or_default();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Dead peers are found by pings; a live idle HTTP/2 client keeps its connection.
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let mut warned_full = false;
    tokio::pin!(shutdown);
    loop {
        let next = async {
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            (permit, listener.accept().await)
        };
        let (permit, accepted) = tokio::select! {
            () = &mut shutdown => break,
            next = next => next,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) if out_of_descriptors(&e) => {
                if !warned_full {
                    tracing::warn!(error = %e, open = limits.max_connections - permits.available_permits(), "out of file descriptors: accepting paused briefly (lower server.max_connections or raise the descriptor limit)");
                    warned_full = true;
                }
                drop(permit);
                tokio::time::sleep(NO_DESCRIPTOR_BACKOFF).await;
                continue;
            }
            // A connection that failed between the kernel's accept and ours.
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        };
        warned_full = false;
        if permits.available_permits() == 0 {
            tracing::debug!(
                max = limits.max_connections,
                "connection cap reached: accepting resumes when one closes"
            );
        }
        let _ = stream.set_nodelay(true);
        let service = hyper::service::service_fn({
            let (endpoint, local, remote) = (
                endpoint.clone(),
                local.clone(),
                RemoteAddr(Addr::SocketAddr(remote)),
            );
            move |req: hyper::Request<hyper::body::Incoming>| {
                let (endpoint, local, remote) = (endpoint.clone(), local.clone(), remote.clone());
                async move {
                    let req = Request::from((req, local, remote, Scheme::HTTP));
                    let resp = endpoint.get_response(req).await;
                    Ok::<_, Infallible>(hyper::Response::from(resp))
                }
            }
        });
        // The protocol is told from the first bytes, and hyper's header timer starts only
        // once they came: a client that connects and sends nothing gets the same time.
        let first_byte = limits.header_read_timeout;
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _permit = permit;
            // `peek` waits for a byte without taking it (`readable` may wake spuriously).
            match tokio::time::timeout(first_byte, stream.peek(&mut [0u8; 1])).await {
                Ok(Ok(n)) if n > 0 => {}
                // Silent for too long, closed, or failed: close it.
                _ => return,
            }
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.grace) => {
            tracing::warn!(grace_seconds = limits.grace.as_secs(), "requests still in flight when the grace period ended");
        }
    }
}
