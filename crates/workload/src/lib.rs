//! What puts work through the suite from outside, over the contract alone:
//! seeding a catalogue and customers ([`seed`]), and placing orders at a
//! rate or as fast as they are taken, following each to its outcome
//! ([`load`]). `sagactl seed`, `sagactl load`, the demo and the benchmark
//! all run these.

pub mod load;
mod progress;
pub mod seed;

pub use load::{Percentiles, Report, Spec};
pub use seed::{customer_name, sku_name, Plan, Seeded};
