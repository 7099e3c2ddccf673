//! Spawning private redis-server processes (in progress).
