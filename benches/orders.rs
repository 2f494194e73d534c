//! `cargo bench --bench orders`: `wraith bench` on a small fixed configuration
//! (100,000 orders, 500 tx/s). Under `cargo test` it does nothing: timing belongs
//! here, never in tests.

use std::time::Duration;

use wraith::bench::report::{BenchConfig, BenchScenario, run};

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    tokio::runtime::Runtime::new()?.block_on(run(BenchConfig {
        server: "postgres".into(),
        scenario: BenchScenario::Orders,
        rows: 100_000,
        tps: 500,
        clients: 4,
        window: Duration::from_secs(5),
        offline_baseline: true,
        migrate_args: Vec::new(),
        threads: vec![1, 2],
        dsn: None,
        json: false,
        wraith: Some(env!("CARGO_BIN_EXE_wraith").into()),
    }))
}
