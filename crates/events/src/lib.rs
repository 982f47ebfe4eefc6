//! The jetsaga message schemas: the contract's commands, events and queries,
//! the subjects they travel on, and the validated identifiers they carry.
//!
//! This crate is pure data: serde types and constructors that enforce
//! `docs/contract.md`'s rules. It knows nothing about NATS or tokio, so every
//! service, the CLI and the tests agree on one definition of each message.

pub mod commands;
pub mod ids;
pub mod inventory;
pub mod order;
pub mod payment;
pub mod query;
pub mod replay;
pub mod saga;
pub mod subjects;

pub use ids::{Cents, CustomerId, IdError, OrderId, Quantity, Sku};
pub use order::{CancelReason, LineItem, Order, OrderStatus, PricedLine};
