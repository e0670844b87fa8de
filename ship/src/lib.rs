//! The outbound buffer between whoever produces line protocol and the server that stores it, as
//! vector's `vector-buffers` is between its sources and sinks: a bounded disk [`spool`], the
//! [`shipper`] that posts one request, and the [`drain`] loop that sends a spool oldest first.
//! An [`Outbox`] ties the three together for a producer. The collector ships its samples
//! through it; the aggregator forwards raw points to InfluxDB and the demo ships its simulated
//! site through the same code.

pub mod drain;
pub mod outbox;
pub mod shipper;
pub mod spool;
pub mod stats;

pub use drain::{SharedSpool, ship_loop, spool_append, update_spool_stats};
pub use outbox::Outbox;
pub use shipper::{Delivered, ShipError, Shipper, ShipperConfig};
pub use spool::{Fsync, Spool, SpoolConfig, SpoolError};
pub use stats::ShipStats;
