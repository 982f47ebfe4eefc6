//! Who may do what on the bus (docs/contract.md section 7), written once:
//! [`identities`] is the table of identities and their allow-lists, and
//! [`init`] turns it into what a nats-server and its clients need: a
//! configuration fragment (`auth.conf`) with NATS's own operator and
//! account JWTs on a memory resolver, one credentials file per identity,
//! and, when asked, TLS certificates. The documentation's table is
//! rendered from the same [`identities`], so it cannot drift from what the
//! server enforces.

pub mod identities;
mod jwt;
mod material;
mod tls;

pub use identities::{Identity, Permissions, IDENTITIES};
pub use material::{creds_identity, inbox_prefix, init, AuthError, InitOptions, Material};
