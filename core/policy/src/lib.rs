//! larder-policy (in progress)
