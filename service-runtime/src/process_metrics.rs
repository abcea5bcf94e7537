//! The usual Prometheus process series (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds`), with the names and types every Prometheus client library uses,
//! so stock dashboards and alerts work on our services too.
//!
//! They are observable instruments: `/proc/self` is read only when metrics are collected (a
//! scrape of `/metrics`, or an OTLP export), never on a request path and with no timer of its own.
//! Linux only: elsewhere nothing is registered, rather than a made-up value.
//!
//! The parsers are plain functions over the files' text, tested with fixed inputs below.

use std::{fmt, path::Path};

/// Registers the process series on `meter`: [`crate::telemetry::init`] does, once, on the
/// meter provider it installs.
pub(crate) fn register(meter: &opentelemetry::metrics::Meter) {
    #[cfg(target_os = "linux")]
    linux::register_on(meter, linux::PROC_SELF);
    #[cfg(not(target_os = "linux"))]
    let _ = meter;
}

/// Why a `/proc` file could not be read as expected.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcError {
    file: &'static str,
    problem: String,
}

impl ProcError {
    fn new(file: &'static str, problem: impl Into<String>) -> Self {
        ProcError {
            file,
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ProcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.problem)
    }
}

impl std::error::Error for ProcError {}

/// What `/proc/self/stat` tells about CPU time and start time, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTicks {
    /// `utime` + `stime`: user and system CPU time.
    used: u64,
    /// `starttime`: when the process started, after boot.
    started_after_boot: u64,
}

/// Parses `/proc/<pid>/stat` (proc(5)). The command name (field 2) is in parentheses and may
/// itself contain spaces and parentheses, so the fields are counted from its *last* `)`.
fn parse_stat(text: &str) -> Result<CpuTicks, ProcError> {
    const FILE: &str = "stat";
    let (_, after_comm) = text
        .rsplit_once(')')
        .ok_or_else(|| ProcError::new(FILE, "no `)` closing the command name"))?;
    // Field 3 (state) is the first after the name: field n is at index n - 3.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize, name: &str| -> Result<u64, ProcError> {
        let raw = fields
            .get(n - 3)
            .ok_or_else(|| ProcError::new(FILE, format!("field {n} ({name}) is missing")))?;
        raw.parse().map_err(|_| {
            ProcError::new(FILE, format!("field {n} ({name}) is not a number: {raw:?}"))
        })
    };
    let utime = field(14, "utime")?;
    let stime = field(15, "stime")?;
    Ok(CpuTicks {
        used: utime.saturating_add(stime),
        started_after_boot: field(22, "starttime")?,
    })
}

/// Resident and virtual memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Memory {
    resident: u64,
    virtual_size: u64,
}

/// Parses `VmRSS` and `VmSize` of `/proc/<pid>/status` (given in kB: KiB, proc(5)). Using them
/// rather than `statm`'s page counts needs no page size.
fn parse_status(text: &str) -> Result<Memory, ProcError> {
    const FILE: &str = "status";
    let kib = |key: &str| -> Result<u64, ProcError> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .ok_or_else(|| ProcError::new(FILE, format!("no {key} line")))?;
        let value = line
            .trim()
            .strip_suffix("kB")
            .ok_or_else(|| ProcError::new(FILE, format!("{key} is not in kB: {line:?}")))?;
        let kib: u64 = value
            .trim()
            .parse()
            .map_err(|_| ProcError::new(FILE, format!("{key} is not a number: {line:?}")))?;
        Ok(kib.saturating_mul(1024))
    };
    Ok(Memory {
        resident: kib("VmRSS")?,
        virtual_size: kib("VmSize")?,
    })
}

/// The soft limit on open file descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FdLimit {
    Limited(u64),
    Unlimited,
}

/// Parses the `Max open files` line of `/proc/<pid>/limits` (its soft limit, the one that applies).
fn parse_max_fds(text: &str) -> Result<FdLimit, ProcError> {
    const FILE: &str = "limits";
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .ok_or_else(|| ProcError::new(FILE, "no `Max open files` line"))?;
    match line.split_whitespace().next() {
        Some("unlimited") => Ok(FdLimit::Unlimited),
        Some(soft) => soft
            .parse()
            .map(FdLimit::Limited)
            .map_err(|_| ProcError::new(FILE, format!("soft limit is not a number: {soft:?}"))),
        None => Err(ProcError::new(FILE, "`Max open files` has no values")),
    }
}

/// The boot time (`btime`, seconds since the Unix epoch) from `/proc/stat`.
fn parse_boot_time(text: &str) -> Result<u64, ProcError> {
    const FILE: &str = "/proc/stat";
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .ok_or_else(|| ProcError::new(FILE, "no btime line"))?;
    value
        .trim()
        .parse()
        .map_err(|_| ProcError::new(FILE, format!("btime is not a number: {value:?}")))
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, which libc itself reads from here): the
/// `AT_CLKTCK` entry of the auxiliary vector, `/proc/<pid>/auxv`, pairs of native words.
fn parse_clock_ticks(auxv: &[u8]) -> Result<u64, ProcError> {
    const FILE: &str = "auxv";
    const AT_NULL: usize = 0;
    const AT_CLKTCK: usize = 17;
    const WORD: usize = size_of::<usize>();
    let word = |chunk: &[u8]| -> usize {
        let mut bytes = [0; WORD];
        bytes.copy_from_slice(chunk);
        usize::from_ne_bytes(bytes)
    };
    for pair in auxv.chunks_exact(2 * WORD) {
        match word(&pair[..WORD]) {
            AT_NULL => break,
            AT_CLKTCK => {
                let ticks = word(&pair[WORD..]) as u64;
                return if ticks == 0 {
                    Err(ProcError::new(FILE, "AT_CLKTCK is 0"))
                } else {
                    Ok(ticks)
                };
            }
            _ => {}
        }
    }
    Err(ProcError::new(FILE, "no AT_CLKTCK entry"))
}

/// The entries of a process's `fd` directory: its open file descriptors (including the one this
/// listing itself holds, as every Prometheus client counts them).
fn count_fds(dir: &Path) -> std::io::Result<u64> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        entry?;
        n += 1;
    }
    Ok(n)
}

#[cfg(target_os = "linux")]
mod linux {
    use std::path::{Path, PathBuf};

    use opentelemetry::metrics::{AsyncInstrument, AsyncInstrumentBuilder, Meter};

    use super::{
        FdLimit, ProcError, count_fds, parse_boot_time, parse_clock_ticks, parse_max_fds,
        parse_stat, parse_status,
    };

    pub(super) const PROC_SELF: &str = "/proc/self";

    fn read(dir: &Path, file: &'static str) -> Result<String, ProcError> {
        std::fs::read_to_string(dir.join(file))
            .map_err(|e| ProcError::new(file, format!("cannot read: {e}")))
    }

    /// One series: its name (the Prometheus name, less `_total` for a counter), unit and help.
    struct Series {
        name: &'static str,
        unit: Option<&'static str>,
        help: &'static str,
        counter: bool,
    }

    /// A reading of a series: its value now, `None` when it has none to report (an unlimited
    /// limit), an error when its source cannot be read.
    type Sample = Result<Option<f64>, ProcError>;

    /// Registers `series` on `meter` when `sample` can be taken now (and is taken again at each
    /// collection); leaves it out, with a warning, when it cannot.
    fn register(
        meter: &Meter,
        series: Series,
        sample: impl Fn() -> Sample + Send + Sync + 'static,
    ) {
        if let Err(e) = sample() {
            let suffix = if series.counter { "_total" } else { "" };
            tracing::warn!(
                series = format!("{}{suffix}", series.name),
                error = %e,
                "process metric left out: /proc is not readable as expected"
            );
            return;
        }
        let observe = move |o: &dyn AsyncInstrument<f64>| {
            if let Ok(Some(v)) = sample() {
                o.observe(v, &[]);
            }
        };
        if series.counter {
            series
                .describe(meter.f64_observable_counter(series.name), observe)
                .build();
        } else {
            series
                .describe(meter.f64_observable_gauge(series.name), observe)
                .build();
        }
    }

    impl Series {
        /// `builder` with this series' unit, help and `observe` (a counter or a gauge).
        fn describe<'a, I>(
            &self,
            builder: AsyncInstrumentBuilder<'a, I, f64>,
            observe: impl Fn(&dyn AsyncInstrument<f64>) + Send + Sync + 'static,
        ) -> AsyncInstrumentBuilder<'a, I, f64> {
            let builder = match self.unit {
                Some(unit) => builder.with_unit(unit),
                None => builder,
            };
            builder.with_description(self.help).with_callback(observe)
        }
    }

    /// Registers every series whose source can be read now on `meter`, reading `proc_self`
    /// (a `/proc/<pid>` directory); what cannot be read is left out, with a warning.
    pub(super) fn register_on(meter: &Meter, proc_self: &str) {
        let dir = PathBuf::from(proc_self);
        // CPU time and the start time are counted in clock ticks.
        let hz = std::fs::read(dir.join("auxv"))
            .map_err(|e| ProcError::new("auxv", format!("cannot read: {e}")))
            .and_then(|auxv| parse_clock_ticks(&auxv))
            .map(|ticks| ticks as f64);
        let stat = {
            let dir = dir.clone();
            move || read(&dir, "stat").and_then(|s| parse_stat(&s))
        };
        // Constant for the life of the process: computed once, here.
        let started = hz.clone().and_then(|hz| {
            let boot = std::fs::read_to_string("/proc/stat")
                .map_err(|e| ProcError::new("/proc/stat", format!("cannot read: {e}")))
                .and_then(|s| parse_boot_time(&s))?;
            Ok(boot as f64 + stat()?.started_after_boot as f64 / hz)
        });
        let status = {
            let dir = dir.clone();
            move || read(&dir, "status").and_then(|s| parse_status(&s))
        };
        let limits = {
            let dir = dir.clone();
            move || read(&dir, "limits").and_then(|s| parse_max_fds(&s))
        };
        let fd_dir = dir.join("fd");

        register(
            meter,
            Series {
                name: "process_cpu_seconds",
                unit: Some("s"),
                help: "Total user and system CPU time spent in seconds.",
                counter: true,
            },
            move || Ok(Some(stat()?.used as f64 / hz.clone()?)),
        );
        register(
            meter,
            Series {
                name: "process_start_time_seconds",
                unit: Some("s"),
                help: "Start time of the process since unix epoch in seconds.",
                counter: false,
            },
            move || started.clone().map(Some),
        );
        let resident = status.clone();
        register(
            meter,
            Series {
                name: "process_resident_memory_bytes",
                unit: Some("By"),
                help: "Resident memory size in bytes.",
                counter: false,
            },
            move || Ok(Some(resident()?.resident as f64)),
        );
        register(
            meter,
            Series {
                name: "process_virtual_memory_bytes",
                unit: Some("By"),
                help: "Virtual memory size in bytes.",
                counter: false,
            },
            move || Ok(Some(status()?.virtual_size as f64)),
        );
        register(
            meter,
            Series {
                name: "process_open_fds",
                unit: None,
                help: "Number of open file descriptors.",
                counter: false,
            },
            move || {
                count_fds(&fd_dir)
                    .map(|n| Some(n as f64))
                    .map_err(|e| ProcError::new("fd", format!("cannot list: {e}")))
            },
        );
        // The limit can change at run time (setrlimit); "unlimited" has no number.
        register(
            meter,
            Series {
                name: "process_max_fds",
                unit: None,
                help: "Maximum number of open file descriptors.",
                counter: false,
            },
            move || {
                Ok(match limits()? {
                    FdLimit::Limited(n) => Some(n as f64),
                    FdLimit::Unlimited => None,
                })
            },
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A real line, with a command name that has spaces and a `)` in it.
    const STAT: &str = "4242 (token (svc) 1) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                        250 75 0 0 20 0 9 0 987654 123456789 4321 18446744073709551615 1 1 0 0 \
                        0 0 0 4096 17922 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_gives_cpu_and_start_ticks_after_the_last_parenthesis() {
        assert_eq!(
            parse_stat(STAT).unwrap(),
            CpuTicks {
                used: 325,
                started_after_boot: 987_654
            }
        );
    }

    #[test]
    fn a_truncated_or_garbled_stat_is_an_error_naming_the_field() {
        let e = parse_stat("4242 (x) S 1 2 3").unwrap_err();
        assert_eq!(e.to_string(), "stat: field 14 (utime) is missing");
        let e = parse_stat(&STAT.replace(" 250 ", " x ")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "stat: field 14 (utime) is not a number: \"x\""
        );
        assert!(parse_stat("no parenthesis").is_err());
    }

    const STATUS: &str = "Name:\ttoken-service\nUmask:\t0022\nState:\tS (sleeping)\n\
                          VmPeak:\t  200000 kB\nVmSize:\t  181236 kB\nVmLck:\t       0 kB\n\
                          VmHWM:\t   20000 kB\nVmRSS:\t   15872 kB\nRssAnon:\t    9000 kB\n\
                          Threads:\t9\n";

    #[test]
    fn status_gives_resident_and_virtual_memory_in_bytes() {
        assert_eq!(
            parse_status(STATUS).unwrap(),
            Memory {
                resident: 15_872 * 1024,
                virtual_size: 181_236 * 1024
            }
        );
        // RssAnon must not be taken for VmRSS, nor VmPeak for VmSize.
        let e = parse_status("VmSize:\t 1 kB\nRssAnon:\t 2 kB\n").unwrap_err();
        assert_eq!(e.to_string(), "status: no VmRSS line");
        let e = parse_status("VmSize:\t 1 MB\nVmRSS:\t 2 kB\n").unwrap_err();
        assert!(e.to_string().contains("VmSize is not in kB"), "{e}");
    }

    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     \n\
                          Max cpu time              unlimited            unlimited            seconds   \n\
                          Max open files            1024                 524288               files     \n\
                          Max locked memory         8388608              8388608              bytes     \n";

    #[test]
    fn limits_give_the_soft_open_files_limit() {
        assert_eq!(parse_max_fds(LIMITS).unwrap(), FdLimit::Limited(1024));
        let unlimited = LIMITS.replace("1024                 524288", "unlimited unlimited");
        assert_eq!(parse_max_fds(&unlimited).unwrap(), FdLimit::Unlimited);
        let e = parse_max_fds("Max cpu time unlimited unlimited seconds\n").unwrap_err();
        assert_eq!(e.to_string(), "limits: no `Max open files` line");
        assert!(parse_max_fds("Max open files  lots  lots files\n").is_err());
    }

    #[test]
    fn proc_stat_gives_the_boot_time() {
        let text = "cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1764578400\nprocesses 7\n";
        assert_eq!(parse_boot_time(text).unwrap(), 1_764_578_400);
        assert!(parse_boot_time("cpu 1 2 3\n").is_err());
    }

    fn auxv(pairs: &[(usize, usize)]) -> Vec<u8> {
        pairs
            .iter()
            .flat_map(|(k, v)| [k.to_ne_bytes(), v.to_ne_bytes()])
            .flatten()
            .collect()
    }

    #[test]
    fn auxv_gives_the_clock_ticks_per_second() {
        // AT_PAGESZ (6), AT_CLKTCK (17), AT_NULL.
        assert_eq!(
            parse_clock_ticks(&auxv(&[(6, 4096), (17, 100), (0, 0)])).unwrap(),
            100
        );
        // Nothing after AT_NULL counts.
        assert!(parse_clock_ticks(&auxv(&[(6, 4096), (0, 0), (17, 100)])).is_err());
        assert!(parse_clock_ticks(&auxv(&[(17, 0), (0, 0)])).is_err());
        assert!(parse_clock_ticks(&[]).is_err());
    }

    #[test]
    fn open_fds_are_the_entries_of_the_fd_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(count_fds(dir.path()).unwrap(), 0);
        for name in ["0", "1", "2", "7"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        assert_eq!(count_fds(dir.path()).unwrap(), 4);
        assert!(count_fds(&dir.path().join("missing")).is_err());
    }

    /// A series whose source cannot be read is left out, not reported as 0; the others stay.
    #[cfg(target_os = "linux")]
    #[test]
    fn what_cannot_be_read_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let scrape = || {
            let provider = crate::telemetry::ScrapedProvider::default();
            linux::register_on(&provider.meter("process"), dir.path().to_str().unwrap());
            provider.scrape()
        };
        assert!(!scrape().contains("process_"), "{}", scrape());

        std::fs::write(dir.path().join("limits"), LIMITS).unwrap();
        std::fs::create_dir(dir.path().join("fd")).unwrap();
        std::fs::write(dir.path().join("fd").join("0"), "").unwrap();
        let text = scrape();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            ["process_open_fds 1", "process_max_fds 1024"],
            "{text}"
        );
    }

    /// The series as a scrape shows them, read from this test process's own `/proc/self`.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_scrape_shows_every_process_series_with_its_prometheus_type() {
        // Enough CPU time that the kernel's tick accounting (10 ms) has seen some.
        let busy = std::time::Instant::now();
        let mut spin = 0u64;
        while busy.elapsed() < std::time::Duration::from_millis(50) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let provider = crate::telemetry::ScrapedProvider::default();
        linux::register_on(&provider.meter("process"), linux::PROC_SELF);
        let text = provider.scrape();

        let value = |series: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.split_whitespace().next() == Some(series))
                .unwrap_or_else(|| panic!("no {series} sample:\n{text}"));
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        };
        for (series, kind) in [
            ("process_cpu_seconds_total", "counter"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_virtual_memory_bytes", "gauge"),
            ("process_open_fds", "gauge"),
            ("process_max_fds", "gauge"),
            ("process_start_time_seconds", "gauge"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {series} {kind}\n")),
                "{series} is not a {kind}:\n{text}"
            );
            value(series);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value("process_start_time_seconds");
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "this test process started at {started}, now is {now}"
        );
        assert!(
            value("process_resident_memory_bytes") > 1_000_000.0,
            "{text}"
        );
        assert!(
            value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"),
            "{text}"
        );
        assert!(value("process_open_fds") >= 3.0, "{text}");
        assert!(
            value("process_max_fds") >= value("process_open_fds"),
            "{text}"
        );
        assert!(value("process_cpu_seconds_total") >= 0.01, "{text}");
    }
}
