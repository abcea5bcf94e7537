//! Validation of what the command line may ask for: targets on 127.0.0.1 only (so that a typo can
//! never aim load at someone else's host), and runs bounded by both a request count and a duration.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use url::{Host, Url};

/// The longest run we accept: a benchmark that needs more is a soak test, not a benchmark.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// The most concurrent workers (or storm callers) we accept.
pub const MAX_CONCURRENCY: usize = 10_000;

/// Why an argument is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// Not a URL at all.
    #[error("{0:?} is not a URL: {1}")]
    NotUrl(String, String),
    /// Only plain `http://` (gRPC without TLS, the fake, projects-service) is spoken.
    #[error("{0:?}: only http:// URLs are supported")]
    Scheme(String),
    /// The host is not the IPv4 loopback address `127.0.0.1`.
    #[error("{0:?}: only 127.0.0.1 is allowed (loadgen never sends load anywhere else)")]
    NotLoopback(String),
    /// A gRPC target with a path, query or fragment: it would be silently ignored.
    #[error("{0:?}: a target is http://127.0.0.1:PORT, without a path or query")]
    TargetWithPath(String),
    /// Credentials in a URL would end up in logs and reports.
    #[error("{0:?}: user name or password in the URL is not allowed")]
    UserInfo(String),
    /// An empty target list.
    #[error("no target given")]
    NoTarget,
    /// A listen address that is not `127.0.0.1:PORT`.
    #[error("{0:?} is not an address 127.0.0.1:PORT")]
    NotLocalAddr(String),
    /// A zero or oversized bound.
    #[error("{name} must be between {min} and {max}, not {value}")]
    OutOfRange {
        /// The option at fault.
        name: &'static str,
        /// Its value.
        value: String,
        /// The smallest accepted value.
        min: String,
        /// The largest accepted value.
        max: String,
    },
}

/// An `http://127.0.0.1…` URL: the only kind of URL loadgen sends anything to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUrl(Url);

impl LocalUrl {
    /// Any `http://127.0.0.1[:port]/path?query` URL.
    pub fn parse(raw: &str) -> Result<Self, ArgError> {
        let raw = raw.trim();
        let url = Url::parse(raw).map_err(|e| ArgError::NotUrl(raw.to_owned(), e.to_string()))?;
        Self::check(url, raw)
    }

    /// Checks an already parsed URL (a form action, a `links.next`) with the same rules.
    pub fn from_url(url: Url) -> Result<Self, ArgError> {
        let raw = url.to_string();
        Self::check(url, &raw)
    }

    fn check(url: Url, raw: &str) -> Result<Self, ArgError> {
        if url.scheme() != "http" {
            return Err(ArgError::Scheme(raw.to_owned()));
        }
        // `Url` normalises `127.1` and `2130706433` to `127.0.0.1`, so those pass; names such as
        // `localhost` do not, since a resolver could answer anything.
        if url.host() != Some(Host::Ipv4(Ipv4Addr::LOCALHOST)) {
            return Err(ArgError::NotLoopback(raw.to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ArgError::UserInfo(raw.to_owned()));
        }
        Ok(Self(url))
    }

    /// A gRPC target: `http://127.0.0.1:PORT` with nothing after the authority.
    pub fn parse_target(raw: &str) -> Result<Self, ArgError> {
        let url = Self::parse(raw)?;
        if url.0.path() != "/" || url.0.query().is_some() || url.0.fragment().is_some() {
            return Err(ArgError::TargetWithPath(raw.trim().to_owned()));
        }
        Ok(url)
    }

    /// The URL.
    pub fn url(&self) -> &Url {
        &self.0
    }

    /// `http://127.0.0.1:PORT`, without the trailing slash `Url` adds (what tonic expects).
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }
}

impl std::fmt::Display for LocalUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A comma-separated list of gRPC targets, each checked by [`LocalUrl::parse_target`].
pub fn parse_targets(raw: &str) -> Result<Vec<LocalUrl>, ArgError> {
    let targets = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(LocalUrl::parse_target)
        .collect::<Result<Vec<_>, _>>()?;
    if targets.is_empty() {
        return Err(ArgError::NoTarget);
    }
    Ok(targets)
}

/// A listen address: `127.0.0.1:PORT` (port 0 lets the system choose).
pub fn parse_local_addr(raw: &str) -> Result<SocketAddr, ArgError> {
    let addr: SocketAddr = raw
        .trim()
        .parse()
        .map_err(|_| ArgError::NotLocalAddr(raw.to_owned()))?;
    if addr.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST) {
        return Err(ArgError::NotLocalAddr(raw.to_owned()));
    }
    Ok(addr)
}

/// How much load a run may send: it stops at whichever bound it reaches first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The most requests (listings, calls) the run sends.
    pub requests: u64,
    /// The longest the run lasts; calls still in flight then get a short grace period.
    pub duration: Duration,
}

impl Budget {
    /// Both bounds are required and must be positive; the duration is at most [`MAX_DURATION`].
    pub fn new(requests: u64, duration_secs: f64) -> Result<Self, ArgError> {
        if requests == 0 {
            return Err(ArgError::OutOfRange {
                name: "--requests",
                value: requests.to_string(),
                min: "1".into(),
                max: u64::MAX.to_string(),
            });
        }
        let max = MAX_DURATION.as_secs_f64();
        // `!(x > 0)` also refuses NaN.
        if !(duration_secs > 0.0 && duration_secs <= max) {
            return Err(ArgError::OutOfRange {
                name: "--duration-secs",
                value: duration_secs.to_string(),
                min: "more than 0".into(),
                max: max.to_string(),
            });
        }
        Ok(Self {
            requests,
            duration: Duration::from_secs_f64(duration_secs),
        })
    }
}

/// A worker or caller count: 1 to [`MAX_CONCURRENCY`].
pub fn check_concurrency(name: &'static str, n: usize) -> Result<usize, ArgError> {
    if n == 0 || n > MAX_CONCURRENCY {
        return Err(ArgError::OutOfRange {
            name,
            value: n.to_string(),
            min: "1".into(),
            max: MAX_CONCURRENCY.to_string(),
        });
    }
    Ok(n)
}

/// The most installs one `loadgen install --count` makes.
pub const MAX_COUNT: usize = 10_000_000;

/// A count of things to make (installs): 1 to [`MAX_COUNT`].
pub fn check_count(name: &'static str, n: usize) -> Result<usize, ArgError> {
    if n == 0 || n > MAX_COUNT {
        return Err(ArgError::OutOfRange {
            name,
            value: n.to_string(),
            min: "1".into(),
            max: MAX_COUNT.to_string(),
        });
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn loopback_http_urls_are_accepted() {
        for ok in [
            "http://127.0.0.1:50051",
            "http://127.0.0.1:8081/v1/orgs/x/projects?origin=cli",
            " http://127.0.0.1:1/ ",
            // Normalised by the URL parser to 127.0.0.1.
            "http://127.1:80",
        ] {
            let url = LocalUrl::parse(ok).unwrap();
            assert_eq!(url.url().host_str(), Some("127.0.0.1"), "{ok}");
        }
        assert_eq!(
            LocalUrl::parse_target("http://127.0.0.1:50051")
                .unwrap()
                .origin(),
            "http://127.0.0.1:50051"
        );
    }

    #[test]
    fn anything_but_127_0_0_1_is_refused() {
        for (raw, want) in [
            (
                "http://localhost:50051",
                ArgError::NotLoopback("http://localhost:50051".into()),
            ),
            (
                "http://127.0.0.2:50051",
                ArgError::NotLoopback("http://127.0.0.2:50051".into()),
            ),
            (
                "http://[::1]:50051",
                ArgError::NotLoopback("http://[::1]:50051".into()),
            ),
            (
                "http://10.0.0.1:80",
                ArgError::NotLoopback("http://10.0.0.1:80".into()),
            ),
            (
                "http://api.snyk.io",
                ArgError::NotLoopback("http://api.snyk.io".into()),
            ),
            (
                "https://127.0.0.1:443",
                ArgError::Scheme("https://127.0.0.1:443".into()),
            ),
            (
                "http://u:p@127.0.0.1:1",
                ArgError::UserInfo("http://u:p@127.0.0.1:1".into()),
            ),
        ] {
            assert_eq!(LocalUrl::parse(raw).unwrap_err(), want, "{raw}");
        }
        assert!(matches!(
            LocalUrl::parse("127.0.0.1:50051").unwrap_err(),
            ArgError::NotUrl(..) | ArgError::Scheme(_)
        ));
        assert!(matches!(
            LocalUrl::parse("not a url").unwrap_err(),
            ArgError::NotUrl(..)
        ));
        // The message says what is allowed.
        let msg = LocalUrl::parse("http://example.com")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("only 127.0.0.1"), "{msg}");
    }

    #[test]
    fn target_lists_are_all_checked() {
        let targets = parse_targets("http://127.0.0.1:1, http://127.0.0.1:2,").unwrap();
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[1].origin(), "http://127.0.0.1:2");
        assert_eq!(
            parse_targets("http://127.0.0.1:1,http://localhost:2").unwrap_err(),
            ArgError::NotLoopback("http://localhost:2".into())
        );
        assert_eq!(parse_targets(" , ").unwrap_err(), ArgError::NoTarget);
        assert_eq!(
            parse_targets("http://127.0.0.1:1/path").unwrap_err(),
            ArgError::TargetWithPath("http://127.0.0.1:1/path".into())
        );
    }

    #[test]
    fn listen_addresses_are_loopback_only() {
        assert_eq!(parse_local_addr("127.0.0.1:0").unwrap().port(), 0);
        assert_eq!(parse_local_addr("127.0.0.1:9000").unwrap().port(), 9000);
        for bad in ["0.0.0.0:0", "[::1]:0", "localhost:1", "127.0.0.1", ""] {
            assert_eq!(
                parse_local_addr(bad).unwrap_err(),
                ArgError::NotLocalAddr(bad.into()),
                "{bad}"
            );
        }
    }

    #[test]
    fn budgets_need_both_bounds() {
        let b = Budget::new(10, 1.5).unwrap();
        assert_eq!(b.requests, 10);
        assert_eq!(b.duration, Duration::from_millis(1500));
        for (requests, secs, option) in [
            (0, 1.0, "--requests"),
            (1, 0.0, "--duration-secs"),
            (1, -1.0, "--duration-secs"),
            (1, f64::NAN, "--duration-secs"),
            (1, 3601.0, "--duration-secs"),
        ] {
            let err = Budget::new(requests, secs).unwrap_err();
            assert!(
                err.to_string().starts_with(option),
                "{requests}/{secs}: {err}"
            );
        }
    }

    #[test]
    fn concurrency_is_bounded() {
        assert_eq!(check_concurrency("--concurrency", 64).unwrap(), 64);
        assert!(check_concurrency("--concurrency", 0).is_err());
        let err = check_concurrency("--callers", 10_001).unwrap_err();
        assert!(err.to_string().contains("--callers"), "{err}");
        assert_eq!(check_count("--count", 100_000).unwrap(), 100_000);
        assert!(check_count("--count", 0).is_err());
        assert!(check_count("--count", MAX_COUNT + 1).is_err());
    }
}
