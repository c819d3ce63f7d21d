//! What the numbers were measured on: cores, memory, CPU, and this process's peak RSS.

/// The machine a run measured.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct Machine {
    /// Cores available to this process.
    pub(crate) cores: usize,
    /// Total memory, MiB.
    pub(crate) memory_mib: u64,
    /// The CPU's model name.
    pub(crate) cpu: String,
    /// The kernel's release.
    pub(crate) kernel: String,
}

impl Machine {
    /// Reads `/proc` (fields stay empty or zero where it is missing).
    pub(crate) fn read() -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self {
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_mib: field_kib(&meminfo, "MemTotal").unwrap_or(0) / 1024,
            cpu: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned()))
                .unwrap_or_default(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        }
    }
}

/// This process's peak resident set size (`VmHWM`), MiB.
pub(crate) fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    Some(field_kib(&status, "VmHWM")? as f64 / 1024.0)
}

/// Resident memory of this process now, MiB (0 where `/proc` cannot be read).
pub(crate) fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status").ok().and_then(|s| field_kib(&s, "VmRSS")).map_or(0.0, |kib| kib as f64 / 1024.0)
}

/// A `Name:   1234 kB` field of a `/proc` file, in KiB.
fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields_are_read_in_kib() {
        assert_eq!(field_kib("MemTotal:        8124400 kB\nMemFree: 1 kB\n", "MemTotal"), Some(8_124_400));
        assert_eq!(field_kib("VmHWM:\t   10240 kB\n", "VmHWM"), Some(10_240));
        assert_eq!(field_kib("VmRSS: 1 kB\n", "VmHWM"), None);
    }
}
