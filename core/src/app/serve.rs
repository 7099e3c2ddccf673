//! Serving a built application: bind, start, serve until SIGTERM/SIGINT, drain, stop.

use std::net::SocketAddr;
use std::time::Duration;

use crate::app::listen::{self, ConnectionLimits};
use crate::app::{App, StartError};
use crate::config::LoadedConfig;
use crate::plugins::PluginRegistry;

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested: no new connections, draining in-flight requests");
}

/// Builds, binds, serves until SIGTERM/SIGINT, drains, stops plugins.
pub async fn serve(config: LoadedConfig, registry: &PluginRegistry) -> Result<(), StartError> {
    let server = config.config.server.clone();
    let grace = Duration::from_secs(server.shutdown_grace_seconds);
    let addr_text = config.config.listen.clone();
    // Build first: it checks the whole config and reports every problem at once.
    let (app, endpoint) = App::build(config, registry).await?;
    let addr: SocketAddr = addr_text.parse().map_err(|_| StartError::Bind {
        addr: addr_text.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an address:port"),
    })?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr_text.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| StartError::Bind {
        addr: addr_text.clone(),
        source,
    })?;
    app.start().await?;
    let names: Vec<&str> = app.plugins.iter().map(|p| p.name).collect();
    tracing::info!(
        addr = %local,
        plugins = ?names,
        max_connections = server.connection_cap(),
        header_read_timeout_seconds = server.header_read_timeout_seconds,
        "larder ready"
    );
    // The one line on stdout: scripts and tests read the bound address (port 0 included).
    println!("listening on http://{local}");
    let limits = ConnectionLimits {
        max_connections: server.connection_cap(),
        header_read_timeout: Duration::from_secs(server.header_read_timeout_seconds),
        grace,
    };
    listen::serve(listener, endpoint, limits, shutdown_signal()).await;
    app.stop(grace).await;
    tracing::info!("stopped");
    Ok(())
}
