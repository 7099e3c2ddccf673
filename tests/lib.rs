//! End-to-end tests live in the `[[test]]` targets of this package; see `larder-testkit`.
