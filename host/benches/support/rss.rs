//! This process's memory as Linux reports it in /proc/self/status, for the benches' figures.

/// The peak resident set size so far (VmHWM), in MiB; NaN where /proc is not available.
#[allow(dead_code)]
pub fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// The resident set size now (VmRSS), in MiB.
#[allow(dead_code)]
pub fn current_rss_mib() -> f64 {
    status_mib("VmRSS:")
}

fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}
