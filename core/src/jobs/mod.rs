//! Background jobs: warming ([`warming`]: at start-up, on a schedule, on demand) and policy
//! hot reload ([`reload`]: file changes, SIGHUP).

pub(crate) mod reload;
pub(crate) mod warming;
