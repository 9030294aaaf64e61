//! `chopin metrics`: the key figures of a running app, from two scrapes of its `/metrics`.
//!
//! A rate needs two readings, so the command scrapes twice, `--interval` apart, and reports
//! what changed in between (requests/s, error ratio, latency quantiles estimated from the
//! histogram buckets as Prometheus's `histogram_quantile` does, cache hit ratio, 429s), plus
//! the gauges of the second scrape (requests in flight, the database pools and their
//! breakers, process memory and file descriptors).
//!
//! The Prometheus text format (0.0.4) is parsed here: the crates that parse it are either
//! unmaintained or pull a regex engine for what is a line-oriented format of three parts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::output::{CliError, CliResult};

/// Where `chopin metrics` looks without a URL: `App::serve`'s default metrics listener.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9464/metrics";

/// One sample line: `name{label="value",…} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name, suffixes included (`…_total`, `…_bucket`).
    pub name: String,
    /// Label pairs in the order written, values unescaped.
    pub labels: Labels,
    /// The value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parse a scrape in the Prometheus text format. Comments (`# HELP`, `# TYPE`) and blank lines
/// are skipped; a malformed line is an error naming its line number.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(parse_line(line).map_err(|e| format!("line {}: {e}: {line}", i + 1))?);
    }
    Ok(samples)
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    let valid_name = name.chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    });
    if name.is_empty() || !valid_name {
        return Err("invalid metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, tail) = parse_labels(after)?;
        labels = parsed;
        rest = tail;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = parse_value(value).ok_or("invalid value")?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| "invalid timestamp".to_string())?;
    }
    if fields.next().is_some() {
        return Err("unexpected text after the value".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Label pairs, in the order written.
type Labels = Vec<(String, String)>;

/// The labels after `{`, and the text after the closing `}`.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(tail) = s.strip_prefix('}') {
            return Ok((labels, tail));
        }
        let eq = s.find('=').ok_or("a label without `=`")?;
        let name = s[..eq].trim();
        if name.is_empty()
            || !name
                .chars()
                .enumerate()
                .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()))
        {
            return Err("invalid label name".into());
        }
        s = s[eq + 1..].trim_start();
        s = s.strip_prefix('"').ok_or("a label value without quotes")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("an unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    _ => return Err("an invalid escape in a label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        s = s[end + 1..].trim_start();
        if let Some(tail) = s.strip_prefix(',') {
            s = tail;
        } else if !s.starts_with('}') {
            return Err("expected `,` or `}` after a label".into());
        }
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// One scrape, read by name.
#[derive(Debug, Default)]
pub struct Scrape {
    samples: Vec<Sample>,
}

impl Scrape {
    /// Parse `text` (the body of a `/metrics` answer).
    pub fn parse(text: &str) -> Result<Scrape, String> {
        Ok(Scrape {
            samples: parse(text)?,
        })
    }

    /// The samples named `name` that `keep` accepts.
    fn select<'a>(
        &'a self,
        name: &'a str,
        keep: impl Fn(&Sample) -> bool + 'a,
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.name == name && keep(s))
    }

    /// The sum of the samples named `name` that `keep` accepts; `None` when there are none.
    fn sum(&self, name: &str, keep: impl Fn(&Sample) -> bool) -> Option<f64> {
        self.select(name, keep)
            .map(|s| s.value)
            .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
    }

    /// Label set of `s` without `drop`, as a key.
    fn key(s: &Sample, drop: &str) -> String {
        let mut key = String::new();
        for (k, v) in &s.labels {
            if k != drop {
                let _ = write!(key, "{k}={v:?},");
            }
        }
        key
    }

    /// How much the counters named `name` that `keep` accepts grew from `before` to `self`,
    /// summed over series (a series that restarted counts from zero, as Prometheus does).
    fn increase(&self, before: &Scrape, name: &str, keep: impl Fn(&Sample) -> bool) -> f64 {
        let old: BTreeMap<String, f64> = before
            .select(name, &keep)
            .map(|s| (Scrape::key(s, ""), s.value))
            .collect();
        self.select(name, &keep)
            .map(|s| match old.get(&Scrape::key(s, "")) {
                Some(&v) if s.value >= v => s.value - v,
                _ => s.value,
            })
            // Not `.sum()`: an empty f64 sum is -0.0, printed as "-0".
            .fold(0.0, |acc, v| acc + v)
    }
}

/// The `q` quantile (0..=1) of a histogram's bucket increases (`le` → cumulative count), the
/// way Prometheus's `histogram_quantile` estimates it: linear interpolation inside the bucket
/// the rank falls in; the highest finite bound when it falls in `+Inf`. `None` without
/// observations.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = buckets.to_vec();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let &(last_le, total) = buckets.last()?;
    if !last_le.is_infinite() || total <= 0.0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total;
    let b = buckets.iter().position(|&(_, count)| count >= rank)?;
    if buckets[b].0.is_infinite() {
        return Some(if b > 0 { buckets[b - 1].0 } else { 0.0 });
    }
    let (start, below) = if b == 0 {
        (0.0_f64.min(buckets[0].0), 0.0)
    } else {
        (buckets[b - 1].0, buckets[b - 1].1)
    };
    let end = buckets[b].0;
    let in_bucket = buckets[b].1 - below;
    if in_bucket <= 0.0 {
        return Some(end);
    }
    Some(start + (end - start) * ((rank - below) / in_bucket))
}

/// The bucket increases of histogram `name` from `before` to `after`, summed over series by
/// `le`.
fn bucket_increases(before: &Scrape, after: &Scrape, name: &str) -> Vec<(f64, f64)> {
    let mut by_le: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let bucket = format!("{name}_bucket");
    for s in after.select(&bucket, |_| true) {
        let Some(le) = s.label("le").and_then(parse_value) else {
            continue;
        };
        let key = Scrape::key(s, "");
        let old = before
            .select(&bucket, |o| Scrape::key(o, "") == key)
            .next()
            .map(|o| o.value);
        let inc = match old {
            Some(v) if s.value >= v => s.value - v,
            _ => s.value,
        };
        let entry = by_le.entry(format!("{le:e}")).or_insert((le, 0.0));
        entry.1 += inc;
    }
    by_le.into_values().collect()
}

fn seconds(s: f64) -> String {
    if s < 0.001 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

fn bytes(b: f64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if b >= 1024.0 * MIB {
        format!("{:.2} GiB", b / (1024.0 * MIB))
    } else {
        format!("{:.1} MiB", b / MIB)
    }
}

fn percent(part: f64, whole: f64) -> String {
    format!("{:.1}%", 100.0 * part / whole)
}

/// The report on what changed from `before` to `after`, `elapsed` apart.
pub fn report(url: &str, before: &Scrape, after: &Scrape, elapsed: Duration) -> String {
    let dt = elapsed.as_secs_f64().max(1e-9);
    let mut out = String::new();
    let _ = writeln!(out, "{url}, two scrapes {:.2} s apart", dt);

    const DURATION: &str = "http_server_request_duration_seconds";
    let count = format!("{DURATION}_count");
    let requests = after.increase(before, &count, |_| true);
    let errors = after.increase(before, &count, |s| {
        s.label("http_response_status_code")
            .is_some_and(|c| c.starts_with('5'))
    });
    let active = after.sum("http_server_active_requests", |_| true);
    let mut line = format!(
        "requests      {:.1}/s ({requests:.0} in the interval)",
        requests / dt
    );
    if requests > 0.0 {
        let _ = write!(line, "   5xx {}", percent(errors, requests));
    } else {
        line.push_str("   5xx -");
    }
    if let Some(active) = active {
        let _ = write!(line, "   in flight {active:.0}");
    }
    let _ = writeln!(out, "{line}");
    let buckets = bucket_increases(before, after, DURATION);
    match (
        histogram_quantile(0.5, &buckets),
        histogram_quantile(0.99, &buckets),
    ) {
        (Some(p50), Some(p99)) => {
            let _ = writeln!(
                out,
                "latency       p50 {}   p99 {}",
                seconds(p50),
                seconds(p99)
            );
        }
        _ => {
            let _ = writeln!(out, "latency       - (no requests in the interval)");
        }
    }

    // Database pools: gauges of the second scrape, by pool.
    let mut pools: BTreeMap<String, [Option<f64>; 4]> = BTreeMap::new();
    for s in after.select("chopin_db_pool_connections", |_| true) {
        let pool = s.label("pool").unwrap_or("").to_string();
        let slot = match s.label("state") {
            Some("in_use") => 0,
            Some("idle") => 1,
            _ => continue,
        };
        pools.entry(pool).or_default()[slot] = Some(s.value);
    }
    for (name, slot) in [
        ("chopin_db_pool_max_connections", 2),
        ("chopin_db_breaker_open", 3),
    ] {
        for s in after.select(name, |_| true) {
            let pool = s.label("pool").unwrap_or("").to_string();
            pools.entry(pool).or_default()[slot] = Some(s.value);
        }
    }
    if pools.is_empty() {
        let _ = writeln!(out, "db pool       - (no pool reported)");
    }
    for (pool, [in_use, idle, max, breaker]) in &pools {
        let show = |v: &Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.0}"));
        let mut line = format!(
            "db pool       {pool}: {} in use, {} idle, max {}",
            show(in_use),
            show(idle),
            show(max)
        );
        if let (Some(in_use), Some(max)) = (in_use, max)
            && *max > 0.0
        {
            let _ = write!(line, " ({} used)", percent(*in_use, *max));
        }
        let _ = write!(
            line,
            "   breaker {}",
            match breaker {
                Some(v) if *v >= 1.0 => "OPEN",
                Some(_) => "closed",
                None => "?",
            }
        );
        let _ = writeln!(out, "{line}");
    }

    // Cache hit ratio per tier, over the interval.
    let mut tiers: Vec<String> = after
        .select("chopin_cache_hits_total", |_| true)
        .chain(after.select("chopin_cache_misses_total", |_| true))
        .filter_map(|s| s.label("tier").map(str::to_string))
        .collect();
    tiers.sort();
    tiers.dedup();
    if tiers.is_empty() {
        let _ = writeln!(out, "cache         - (no cache metrics)");
    } else {
        let mut parts = Vec::new();
        for tier in &tiers {
            let of_tier = |s: &Sample| s.label("tier") == Some(tier.as_str());
            let hits = after.increase(before, "chopin_cache_hits_total", of_tier);
            let misses = after.increase(before, "chopin_cache_misses_total", of_tier);
            if hits + misses > 0.0 {
                parts.push(format!(
                    "{tier} hit {} of {:.0}",
                    percent(hits, hits + misses),
                    hits + misses
                ));
            } else {
                parts.push(format!("{tier} no lookups"));
            }
        }
        let _ = writeln!(out, "cache         {}", parts.join("   "));
    }

    // 429s, by key, over the interval.
    const LIMITED: &str = "chopin_rate_limit_rejections_total";
    let limited = after.increase(before, LIMITED, |_| true);
    let mut keys: Vec<(String, f64)> = after
        .select(LIMITED, |_| true)
        .filter_map(|s| s.label("key").map(str::to_string))
        .map(|key| {
            let n = after.increase(before, LIMITED, |s| s.label("key") == Some(key.as_str()));
            (key, n)
        })
        .filter(|(_, n)| *n > 0.0)
        .collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    let mut line = format!("429s          {:.1}/s ({limited:.0})", limited / dt);
    if !keys.is_empty() {
        let by_key: Vec<String> = keys.iter().map(|(k, n)| format!("{k} {n:.0}")).collect();
        let _ = write!(line, ": {}", by_key.join(", "));
    }
    let total = after.sum(LIMITED, |_| true).unwrap_or(0.0);
    let _ = writeln!(out, "{line}; {total:.0} since start");

    // The process.
    let mut parts = Vec::new();
    if let Some(rss) = after.sum("process_resident_memory_bytes", |_| true) {
        parts.push(format!("RSS {}", bytes(rss)));
    }
    match (
        after.sum("process_open_fds", |_| true),
        after.sum("process_max_fds", |_| true),
    ) {
        (Some(open), Some(max)) => parts.push(format!("fds {open:.0} / {max:.0}")),
        (Some(open), None) => parts.push(format!("fds {open:.0}")),
        _ => {}
    }
    let cpu = after.increase(before, "process_cpu_seconds_total", |_| true);
    if after.sum("process_cpu_seconds_total", |_| true).is_some() {
        parts.push(format!("CPU {:.0}%", 100.0 * cpu / dt));
    }
    if parts.is_empty() {
        let _ = writeln!(out, "process       - (no process metrics)");
    } else {
        let _ = writeln!(out, "process       {}", parts.join("   "));
    }
    out
}

/// `err` and its causes, `: `-separated (reqwest's own message is only "error sending
/// request").
fn with_sources(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

async fn fetch(client: &reqwest::Client, url: &str, token: Option<&str>) -> CliResult<Scrape> {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| {
        CliError::new(format!("cannot fetch {url}: {}", with_sources(&e))).hint(
            "is the app running with chopin-core's `metrics` feature? It serves /metrics on \
             CHOPIN_METRICS_ADDR (default 127.0.0.1:9464); pass that address as the URL",
        )
    })?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Err(
            CliError::new(format!("{url} answered 401 Unauthorized")).hint(
                "pass the app's CHOPIN_METRICS_TOKEN with --token, or set CHOPIN_METRICS_TOKEN",
            ),
        );
    }
    if !status.is_success() {
        return Err(CliError::new(format!("{url} answered {status}"))
            .hint("point at the app's /metrics (CHOPIN_METRICS_ADDR, or /metrics on the main port with CHOPIN_METRICS_ON_MAIN)"));
    }
    let text = response
        .text()
        .await
        .map_err(|e| CliError::new(format!("cannot read the answer of {url}: {e}")))?;
    Scrape::parse(&text)
        .map_err(|e| CliError::new(format!("{url} is not in the Prometheus text format: {e}")))
}

/// `chopin metrics`: scrape `url` twice, `interval` apart, and print the report.
pub fn run(url: &str, token: Option<&str>, interval: Duration) -> CliResult {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the async runtime: {e}")))?;
    let text = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| CliError::new(format!("cannot build an HTTP client: {e}")))?;
        let before = fetch(&client, url, token).await?;
        let start = Instant::now();
        tokio::time::sleep(interval).await;
        let after = fetch(&client, url, token).await?;
        Ok::<_, CliError>(report(url, &before, &after, start.elapsed()))
    })?;
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_labels_escapes_and_special_values() {
        let text = "# HELP x_total A counter.\n# TYPE x_total counter\n\
                    x_total 3\n\
                    y{a=\"1\",b=\"q\\\"uo\\\\te\\nd\"} 2.5 1700000000000\n\
                    z_bucket{le=\"+Inf\"} +Inf\n\
                    w{} NaN\n\
                    v{ a = \"x\" , } -Inf\n";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].name, "x_total");
        assert_eq!(s[0].value, 3.0);
        assert_eq!(s[1].label("a"), Some("1"));
        assert_eq!(s[1].label("b"), Some("q\"uo\\te\nd"));
        assert_eq!(s[1].value, 2.5);
        assert_eq!(s[2].label("le"), Some("+Inf"));
        assert!(s[2].value.is_infinite());
        assert!(s[3].value.is_nan() && s[3].labels.is_empty());
        assert_eq!(s[4].value, f64::NEG_INFINITY);
        assert_eq!(s[4].label("a"), Some("x"));
    }

    #[test]
    fn rejects_malformed_lines_with_their_number() {
        for bad in [
            "x",
            "x{a=\"1\" 2",
            "x{a=1} 2",
            "x{a=\"1\\q\"} 2",
            "x two",
            "x 1 2 3",
            "1x 1",
            "x{=\"1\"} 1",
        ] {
            let err = parse(&format!("ok 1\n{bad}\n")).unwrap_err();
            assert!(err.starts_with("line 2:"), "{bad}: {err}");
        }
    }

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        // 100 observations: 50 ≤ 0.01, 40 in (0.01, 0.1], 9 in (0.1, 1], 1 above 1.
        let b = [
            (0.01, 50.0),
            (0.1, 90.0),
            (1.0, 99.0),
            (f64::INFINITY, 100.0),
        ];
        assert_eq!(histogram_quantile(0.5, &b), Some(0.01));
        let p90 = histogram_quantile(0.9, &b).unwrap();
        assert!((p90 - 0.1).abs() < 1e-12, "{p90}");
        let p95 = histogram_quantile(0.95, &b).unwrap();
        assert!((p95 - (0.1 + 0.9 * 5.0 / 9.0)).abs() < 1e-12, "{p95}");
        // In the +Inf bucket: the highest finite bound.
        assert_eq!(histogram_quantile(0.999, &b), Some(1.0));
        // First bucket: from 0.
        let p25 = histogram_quantile(0.25, &b).unwrap();
        assert!((p25 - 0.005).abs() < 1e-12, "{p25}");
        assert_eq!(
            histogram_quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
        assert_eq!(histogram_quantile(0.5, &[]), None);
    }

    #[test]
    fn increases_survive_restarts_and_new_series() {
        let before = Scrape::parse("c_total{k=\"a\"} 10\nc_total{k=\"b\"} 50\n").unwrap();
        // a: +5; b restarted (50 → 3): 3; c new: 7.
        let after =
            Scrape::parse("c_total{k=\"a\"} 15\nc_total{k=\"b\"} 3\nc_total{k=\"c\"} 7\n").unwrap();
        assert_eq!(after.increase(&before, "c_total", |_| true), 15.0);
        assert_eq!(
            after.increase(&before, "c_total", |s| s.label("k") == Some("a")),
            5.0
        );
    }
}
