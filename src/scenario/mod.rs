//! Scenarios: realistic schemas, data and workloads for the demo, benchmarks and tests.
//!
//! - [`orders`]: the orders-table normalization (`scenarios/orders/`).
//! - [`orders_mysql`]: the same on MySQL/MariaDB.

pub mod orders;
pub mod orders_mysql;
