//! W3C `traceparent` propagation: every outgoing call (token-service, Snyk) carries a child of the
//! incoming request's trace, or of a new trace when the caller sent none.

use rand::Rng as _;

/// The trace context of one incoming request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: String,
    flags: String,
}

impl TraceContext {
    /// From an incoming `traceparent` header; a missing or malformed one starts a new trace.
    pub fn from_header(value: Option<&str>) -> Self {
        value.and_then(parse).unwrap_or_else(|| TraceContext {
            trace_id: format!("{:032x}", rand::rng().random::<u128>().max(1)),
            flags: "01".into(),
        })
    }

    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// A `traceparent` for one outgoing call: same trace, new span id.
    pub fn child(&self) -> String {
        format!(
            "00-{}-{:016x}-{}",
            self.trace_id,
            rand::rng().random::<u64>().max(1),
            self.flags
        )
    }
}

fn parse(v: &str) -> Option<TraceContext> {
    let parts: Vec<&str> = v.trim().split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    match parts.as_slice() {
        [version, trace, span, flags]
            if hex(version, 2)
                && *version != "ff"
                && hex(trace, 32)
                && hex(span, 16)
                && hex(flags, 2)
                && trace.bytes().any(|b| b != b'0')
                && span.bytes().any(|b| b != b'0') =>
        {
            Some(TraceContext {
                trace_id: (*trace).to_owned(),
                flags: (*flags).to_owned(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_incoming_trace_with_a_new_span() {
        let t = TraceContext::from_header(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = t.child();
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(child.ends_with("-01"));
        assert_ne!(
            child,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn malformed_or_missing_starts_a_new_trace() {
        for bad in [
            None,
            Some("garbage"),
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Some("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ] {
            let t = TraceContext::from_header(bad);
            assert_eq!(t.trace_id().len(), 32);
            assert!(parse(&t.child()).is_some());
        }
    }
}
