//! What every jetsaga service shares: the command line, configuration, the
//! NATS connection, waiting for the streams and provisioning them (a step of
//! its own), the event store, the consumer
//! loop, the query endpoints, logging, the HTTP sidecar, and the service
//! lifecycle.

pub mod aggregate;
pub mod cli;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod nats;
pub mod outcome;
pub mod provision;
pub mod query;
pub mod retry;
pub mod service;
pub mod store;
pub mod streams;
pub mod telemetry;
pub mod turns;

pub use consumer::{decode, ConsumerSpec, HandleError, Handler};
pub use outcome::{Attempt, Outcome};
pub use service::ServiceRuntime;
pub use store::{Append, Store, StoreError, Versioned};
