//! larder-store (in progress)
