//! Hot reload of the policies: on a file change in the policy folder (debounced), on SIGHUP,
//! or from the admin API (which calls [`Engine::reload`] directly).

use std::sync::Arc;

use notify::{RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::engine::{Engine, RELOAD_DEBOUNCE};

/// Starts the file watcher and the SIGHUP listener.
pub fn watch(engine: Arc<Engine>, tasks: &TaskTracker, shutdown: CancellationToken) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let paths = engine.policy_paths().to_vec();
    let file_tx = tx.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res
            && (event.kind.is_modify() || event.kind.is_create() || event.kind.is_remove())
            && event
                .paths
                .iter()
                .any(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        {
            let _ = file_tx.send("file change");
        }
    });
    let watcher = match watcher {
        Ok(mut w) => {
            for path in &paths {
                if let Err(e) = w.watch(path, RecursiveMode::NonRecursive) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot watch policies; reload with SIGHUP or the admin API");
                }
            }
            Some(w)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no file watcher; reload with SIGHUP or the admin API");
            None
        }
    };
    #[cfg(unix)]
    {
        let tx = tx.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    got = hup.recv() => {
                        if got.is_none() { return; }
                        let _ = tx.send("SIGHUP");
                    }
                }
            }
        });
    }
    tasks.spawn(async move {
        // Keep the watcher alive as long as this loop runs.
        let _watcher = watcher;
        loop {
            let trigger = tokio::select! {
                _ = shutdown.cancelled() => return,
                t = rx.recv() => match t { Some(t) => t, None => return },
            };
            // Editors save in several writes: wait for the burst to end, then reload once.
            tokio::time::sleep(RELOAD_DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            let _ = engine.reload(trigger);
        }
    });
}
