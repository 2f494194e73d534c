//! Scenarios: realistic schemas, data and workloads for the demo, benchmarks and tests.
//!
//! - [`orders`]: the orders-table normalization (`scenarios/orders/`).
//! - [`orders_mysql`]: the same on MySQL/MariaDB.

pub mod orders;
pub mod orders_mysql;

/// One orders-workload transaction's random choices, the same on either engine.
#[derive(Debug, Clone, Copy)]
pub struct Draw {
    /// 0..100: which kind of change (recreation, status, amount, delete).
    pub op: u32,
    /// The order it starts from, within the loaded ids.
    pub key: i64,
    pub amount: i64,
    /// The live status a change sets.
    pub status: &'static str,
}

impl Draw {
    /// A random draw over orders `1..=max_id`.
    pub fn random(max_id: i64) -> Draw {
        use rand::RngExt;
        let mut rng = rand::rng();
        Draw {
            op: rng.random_range(0..100u32),
            key: rng.random_range(1..=max_id.max(1)),
            amount: rng.random_range(10..1000i64),
            status: ["active", "paused", "cancelled"][rng.random_range(0..3usize)],
        }
    }
}
