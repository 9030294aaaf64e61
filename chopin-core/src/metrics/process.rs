//! The standard `process_*` metrics, read at each scrape: CPU time, resident and virtual
//! memory, open and maximum file descriptors (Linux, from `/proc`), and the start time
//! (everywhere).

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// Register the process collector.
pub(super) fn register(registry: &mut Registry) {
    registry.register_collector(Box::new(ProcessCollector {
        fallback_start: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default(),
    }));
}

#[derive(Debug)]
struct ProcessCollector {
    /// When metrics were first used: the start time where `/proc` cannot tell it.
    fallback_start: f64,
}

/// What one scrape reads.
#[derive(Debug, Default)]
struct Figures {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<i64>,
    virtual_bytes: Option<i64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
    start_time: Option<f64>,
}

#[cfg(target_os = "linux")]
fn read() -> Figures {
    use procfs::WithCurrentSystemInfo;
    let Ok(me) = procfs::process::Process::myself() else {
        return Figures::default();
    };
    let mut figures = Figures::default();
    if let Ok(stat) = me.stat() {
        let ticks = procfs::ticks_per_second() as f64;
        figures.cpu_seconds = Some((stat.utime + stat.stime) as f64 / ticks);
        figures.resident_bytes = i64::try_from(stat.rss_bytes().get()).ok();
        figures.virtual_bytes = i64::try_from(stat.vsize).ok();
        if let Ok(boot) = procfs::boot_time_secs() {
            figures.start_time = Some(boot as f64 + stat.starttime as f64 / ticks);
        }
    }
    figures.open_fds = me.fd_count().ok().and_then(|n| i64::try_from(n).ok());
    if let Ok(limits) = me.limits() {
        figures.max_fds = match limits.max_open_files.soft_limit {
            procfs::process::LimitValue::Value(n) => i64::try_from(n).ok(),
            procfs::process::LimitValue::Unlimited => None,
        };
    }
    figures
}

#[cfg(not(target_os = "linux"))]
fn read() -> Figures {
    Figures::default()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let figures = read();
        if let Some(cpu) = figures.cpu_seconds {
            let counter = ConstCounter::new(cpu);
            counter.encode(encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent",
                Some(&Unit::Seconds),
                counter.metric_type(),
            )?)?;
        }
        for (name, help, value) in [
            (
                "process_resident_memory",
                "Resident memory size",
                figures.resident_bytes,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size",
                figures.virtual_bytes,
            ),
        ] {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(
                    name,
                    help,
                    Some(&Unit::Bytes),
                    gauge.metric_type(),
                )?)?;
            }
        }
        for (name, help, value) in [
            (
                "process_open_fds",
                "Open file descriptors",
                figures.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                figures.max_fds,
            ),
        ] {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    gauge.metric_type(),
                )?)?;
            }
        }
        let gauge = ConstGauge::new(figures.start_time.unwrap_or(self.fallback_start));
        gauge.encode(encoder.encode_descriptor(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Some(&Unit::Seconds),
            gauge.metric_type(),
        )?)?;
        Ok(())
    }
}
