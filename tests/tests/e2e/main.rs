//! End-to-end tests of jetsaga: the four services against a real
//! nats-server, checked only through the public contract (commands, events,
//! queries, dead letters, HTTP).

mod audit;
mod bad_input;
mod binaries;
mod conservation;
mod console;
mod corrupt_state;
mod dead_letters;
mod deadlines;
mod gateway;
mod hot_sku;
mod idempotency;
mod operate;
mod provisioning;
mod queries;
mod reads;
mod retention;
mod saga_paths;
mod security;
mod sidecar;
