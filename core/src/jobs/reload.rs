//! Hot reload of the policies: on a change in the policy folder (debounced), on SIGHUP, or
//! from the admin API (which calls [`Engine::reload`] directly).
//!
//! The watcher looks at folders, not files, and reloads when what a load would read has
//! changed ([`Engine::policy_files_changed`]) rather than when an event names a `*.yaml`:
//! a Kubernetes ConfigMap update is a new `..2026_…` folder and a rename of `..data`, with no
//! event for `policy.yaml` itself, and an editor's rename-over-the-original replaces the
//! inode a file watch would be on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::engine::{Engine, RELOAD_DEBOUNCE};

/// Why the reload loop woke up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// Something moved in a watched folder: reload only if the policy files changed.
    Files,
    /// SIGHUP: reload whatever the files say.
    Hangup,
}

/// The folders to watch for `paths`: a folder itself (not recursively: its subfolders are
/// the kubelet's, reached through `..data`), a file's parent, so that replacing the file or
/// the symlink it is is seen too.
fn watched_folders(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = Vec::new();
    for path in paths {
        let folder = if path.is_file() {
            match path.parent() {
                Some(p) if p != Path::new("") => p.to_path_buf(),
                _ => PathBuf::from("."),
            }
        } else {
            path.clone()
        };
        if !folders.contains(&folder) {
            folders.push(folder);
        }
    }
    folders
}

/// Starts the file watcher and the SIGHUP listener.
pub fn watch(engine: Arc<Engine>, tasks: &TaskTracker, shutdown: CancellationToken) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Trigger>();
    let folders = watched_folders(engine.policy_paths());
    let file_tx = tx.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Reading the files (ours included) reports opens and closes: only changes count.
        // An error (e.g. the kernel's queue overflowed) may hide a change, so it counts too.
        let changed = match res {
            Ok(event) => !event.kind.is_access(),
            Err(_) => true,
        };
        if changed {
            let _ = file_tx.send(Trigger::Files);
        }
    });
    let watcher = match watcher {
        Ok(mut w) => {
            for folder in &folders {
                if let Err(e) = w.watch(folder, RecursiveMode::NonRecursive) {
                    tracing::warn!(path = %folder.display(), error = %e, "cannot watch policies; reload with SIGHUP or the admin API");
                }
            }
            // A change between the start-up load and the watch would otherwise wait for the
            // next event: look once now.
            let _ = tx.send(Trigger::Files);
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
                        let _ = tx.send(Trigger::Hangup);
                    }
                }
            }
        });
    }
    tasks.spawn(async move {
        // Keep the watcher alive as long as this loop runs.
        let _watcher = watcher;
        loop {
            let mut trigger = tokio::select! {
                _ = shutdown.cancelled() => return,
                t = rx.recv() => match t { Some(t) => t, None => return },
            };
            // Editors save in several writes and the kubelet swaps in several steps: wait
            // for the burst to end, then look once.
            tokio::time::sleep(RELOAD_DEBOUNCE).await;
            while let Ok(t) = rx.try_recv() {
                if t == Trigger::Hangup {
                    trigger = t;
                }
            }
            match trigger {
                Trigger::Hangup => {
                    let _ = engine.reload("SIGHUP");
                }
                Trigger::Files => {
                    if engine.policy_files_changed() {
                        let _ = engine.reload("file change");
                    }
                }
            }
        }
    });
}
