//! `wraith bench`'s report as text: the baselines, the idle and loaded runs
//! with their ratios, the workload's latency before, during and after.

/// The report as text for people.
pub fn print_report(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let lat = |v: &serde_json::Value| {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.0} ms, {:.0} tx/s",
            f(&v["p50_ms"]),
            f(&v["p99_ms"]),
            f(&v["max_ms"]),
            f(&v["tps"])
        )
    };
    let (idle, l) = (&r["idle"], &r["loaded"]);
    println!(
        "wraith bench: {} ({:.0} MB), {}",
        r["scenario"].as_str().unwrap_or(""),
        f(&r["table_mb"]),
        r["server"].as_str().unwrap_or("")
    );
    if r["offline_alter_ms"].is_number() {
        println!(
            "  {:<30}{:>8.0} ms",
            format!(
                "{}:",
                r["offline_alter"].as_str().unwrap_or("offline ALTER TABLE")
            ),
            f(&r["offline_alter_ms"])
        );
        if r["pt_osc_ms"].is_number() {
            println!(
                "  pt-online-schema-change:      {:>8.0} ms",
                f(&r["pt_osc_ms"])
            );
        }
        println!(
            "  wraith at idle:               {:>8.0} ms = {:.2}x offline ({:.2}x without verification), peak memory {} MB",
            f(&idle["total_ms"]),
            f(&r["idle_ratio_vs_offline"]),
            f(&r["idle_ratio_without_verification"]),
            r["idle_peak_rss_mb"]
        );
        if r["idle_ratio_vs_pt_osc"].is_number() {
            println!(
                "                                          = {:.2}x pt-online-schema-change",
                f(&r["idle_ratio_vs_pt_osc"])
            );
        }
    } else {
        println!(
            "  wraith at idle:               {:>8.0} ms, peak memory {} MB",
            f(&idle["total_ms"]),
            r["idle_peak_rss_mb"]
        );
    }
    if let Some(rows) = r["threads_scaling"].as_array().filter(|a| !a.is_empty()) {
        println!(
            "  copy threads at idle:  threads   copy ms   rows/s     MB/s   speedup   verify (% of copy)"
        );
        for t in rows {
            println!(
                "                         {:>7} {:>9.0} {:>8.0} {:>8.1} {:>8.2}x {:>8.0} ms ({:.0}%)",
                t["threads"],
                f(&t["copy_ms"]),
                f(&t["copy_rows_per_sec"]),
                f(&t["copy_mb_per_sec"]),
                f(&t["copy_speedup"]),
                f(&t["verify_ms"]),
                100.0 * f(&t["verify_share_of_copy"])
            );
        }
    }
    println!(
        "  wraith under {} tx/s:         {:>8.0} ms; copy {:.0} rows/s ({:.1} MB/s); apply {:.0} keys/s; peak memory {} MB",
        r["workload_tps_target"],
        f(&l["total_ms"]),
        f(&r["copy_rows_per_sec"]),
        f(&r["copy_mb_per_sec"]),
        f(&r["apply_keys_per_sec"]),
        r["loaded_peak_rss_mb"]
    );
    if !r["loaded_migrate_args"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        println!(
            "  loaded run options:           {}; copy paused {:.1} s by throttling",
            r["loaded_migrate_args"].as_str().unwrap_or_default(),
            f(&l["throttled_ms"]) / 1000.0
        );
    }
    println!(
        "  apply lag (heartbeats):       p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        f(&r["apply_lag_p50_ms"]),
        f(&r["apply_lag_p99_ms"]),
        f(&r["apply_lag_max_ms"])
    );
    println!(
        "  verification:                 {:>8.0} ms ({:.0}% of the copy time)",
        f(&r["verification_ms"]),
        100.0 * f(&r["verification_ms"]) / f(&l["copy_ms"]).max(1.0)
    );
    println!(
        "  cutover write stall:          {:>8.0} ms (lock wait {} ms, writes blocked {} ms, {} retries)",
        f(&r["cutover_write_stall_ms"]),
        l["cutover_lock_wait_ms"],
        l["cutover_hold_ms"],
        l["cutover_retries"]
    );
    println!(
        "  workload before:              {}",
        lat(&r["workload_before"])
    );
    println!(
        "  workload during copy:         {} (p99 {:.2}x)",
        lat(&r["workload_during_copy"]),
        f(&r["workload_p99_ratio"])
    );
    println!(
        "  workload during cutover:      {}",
        lat(&r["workload_during_cutover"])
    );
    println!(
        "  workload after:               {}",
        lat(&r["workload_after"])
    );
    println!(
        "  workload errors:              {}; rows differing from the mirror: {}",
        r["workload_failed"], r["rows_differing_from_mirror"]
    );
    let pt = &r["pt_osc_loaded"];
    if pt.is_object() {
        match pt["ms"].as_f64() {
            Some(ms) => println!(
                "  pt-online-schema-change under {} tx/s: {ms:.0} ms; rows differing from the mirror: {}",
                r["workload_tps_target"], pt["rows_differing_from_mirror"]
            ),
            None => println!(
                "  pt-online-schema-change under {} tx/s failed: {}",
                r["workload_tps_target"],
                pt["error"].as_str().unwrap_or("")
            ),
        }
        println!(
            "    workload meanwhile:         {}; {} transactions failed",
            lat(&pt["workload_during"]),
            pt["workload_failed"]
        );
        if let Some(first) = pt["workload_errors"].as_array().and_then(|e| e.first()) {
            println!(
                "    first workload error:       {}",
                first.as_str().unwrap_or("")
            );
        }
    }
}
