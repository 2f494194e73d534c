//! Scenarios: realistic schemas, data and workloads for the demo, benchmarks and tests.
//!
//! - [`orders`]: the orders-table normalization (`scenarios/orders/`).

pub mod orders;
