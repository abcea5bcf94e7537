//! Cursor pagination as Snyk's REST API does it: `limit`, opaque `starting_after` /
//! `ending_before` cursors and relative `links`.
//!
//! A cursor is `v1.` + base64url(JSON `{"i": index}`), the index being the item's position in the
//! unfiltered collection, so a cursor stays meaningful whatever filters accompany it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::error::RestError;

const CURSOR_PREFIX: &str = "v1.";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorBody {
    i: usize,
}

pub(crate) fn encode_cursor(index: usize) -> String {
    // Serialising a one-field struct of an integer cannot fail.
    let json = serde_json::to_vec(&CursorBody { i: index }).unwrap_or_default();
    format!("{CURSOR_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let encoded = cursor.strip_prefix(CURSOR_PREFIX)?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<CursorBody>(&bytes)
        .ok()
        .map(|c| c.i)
}

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cursor {
    First,
    After(usize),
    Before(usize),
}

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageRequest {
    pub(crate) limit: usize,
    pub(crate) cursor: Cursor,
}

impl PageRequest {
    /// From the raw `limit`, `starting_after` and `ending_before` values.
    pub(crate) fn parse(
        limit: Option<&str>,
        starting_after: Option<&str>,
        ending_before: Option<&str>,
    ) -> Result<Self, RestError> {
        let limit = match limit {
            None => 10,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (10..=100).contains(n) && n % 10 == 0)
                .ok_or_else(|| {
                    RestError::bad_parameter(
                        "limit",
                        format!("limit {raw:?} must be a multiple of 10 between 10 and 100"),
                    )
                })?,
        };
        let bad = |name: &'static str, raw: &str| {
            RestError::bad_parameter(name, format!("{name} {raw:?} is not a valid cursor"))
        };
        let cursor = match (starting_after, ending_before) {
            (Some(_), Some(_)) => {
                return Err(RestError::bad_parameter(
                    "ending_before",
                    "starting_after and ending_before cannot be used together",
                ));
            }
            (Some(raw), None) => {
                Cursor::After(decode_cursor(raw).ok_or_else(|| bad("starting_after", raw))?)
            }
            (None, Some(raw)) => {
                Cursor::Before(decode_cursor(raw).ok_or_else(|| bad("ending_before", raw))?)
            }
            (None, None) => Cursor::First,
        };
        Ok(Self { limit, cursor })
    }
}

/// One page of indices into a collection of `total` items, of which `matches` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page {
    pub(crate) indices: Vec<usize>,
    pub(crate) has_next: bool,
    pub(crate) has_prev: bool,
}

pub(crate) fn paginate(
    total: usize,
    request: PageRequest,
    matches: impl Fn(usize) -> bool,
) -> Page {
    let limit = request.limit;
    match request.cursor {
        Cursor::First | Cursor::After(_) => {
            let start = match request.cursor {
                Cursor::After(i) => i.saturating_add(1),
                _ => 0,
            };
            let mut indices: Vec<usize> = (start.min(total)..total)
                .filter(|&i| matches(i))
                .take(limit + 1)
                .collect();
            let has_next = indices.len() > limit;
            indices.truncate(limit);
            let first = indices.first().copied().unwrap_or(start.min(total));
            let has_prev = (0..first).any(&matches);
            Page {
                indices,
                has_next,
                has_prev,
            }
        }
        Cursor::Before(end) => {
            let end = end.min(total);
            let mut indices: Vec<usize> = (0..end)
                .rev()
                .filter(|&i| matches(i))
                .take(limit + 1)
                .collect();
            let has_prev = indices.len() > limit;
            indices.truncate(limit);
            indices.reverse();
            let last = indices.last().map_or(end, |&i| i + 1);
            let has_next = (last..total).any(&matches);
            Page {
                indices,
                has_next,
                has_prev,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn req(limit: usize, cursor: Cursor) -> PageRequest {
        PageRequest { limit, cursor }
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_cursor(&encode_cursor(1233)), Some(1233));
        for bad in [
            "",
            "v1.",
            "v1.!!!",
            "v2.eyJpIjoxfQ",
            "v1.eyJpZCI6IjEwMDAifQo",
            "v1.bnVsbA",
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn limit_must_be_a_multiple_of_ten_in_range() {
        assert_eq!(PageRequest::parse(None, None, None).unwrap().limit, 10);
        assert_eq!(
            PageRequest::parse(Some("100"), None, None).unwrap().limit,
            100
        );
        for bad in ["0", "5", "15", "110", "-10", "ten", "20.0", ""] {
            assert!(PageRequest::parse(Some(bad), None, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_walk_forward_and_back() {
        let all = |_| true;
        let first = paginate(25, req(10, Cursor::First), all);
        assert_eq!(first.indices, (0..10).collect::<Vec<_>>());
        assert!(first.has_next && !first.has_prev);
        let last = paginate(25, req(10, Cursor::After(19)), all);
        assert_eq!(last.indices, (20..25).collect::<Vec<_>>());
        assert!(!last.has_next && last.has_prev);
        let back = paginate(25, req(10, Cursor::Before(20)), all);
        assert_eq!(back.indices, (10..20).collect::<Vec<_>>());
        assert!(back.has_next && back.has_prev);
        let past_end = paginate(25, req(10, Cursor::After(99)), all);
        assert!(past_end.indices.is_empty() && !past_end.has_next && past_end.has_prev);
        let exact = paginate(20, req(10, Cursor::After(9)), all);
        assert!(!exact.has_next);
    }

    #[test]
    fn filters_skip_items_but_keep_cursor_positions() {
        let even = |i: usize| i.is_multiple_of(2);
        let page = paginate(30, req(10, Cursor::After(4)), even);
        assert_eq!(page.indices, vec![6, 8, 10, 12, 14, 16, 18, 20, 22, 24]);
        assert!(page.has_next && page.has_prev);
    }
}
