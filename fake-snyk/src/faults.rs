//! Injected faults: what they are (the public [`Fault`]) and the queue that hands them out in order.

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A misbehaviour to apply to the next matching requests, in order of injection.
///
/// Its JSON form (for `POST /_fake/faults`) is externally tagged in snake case, durations in
/// milliseconds: `{"token_latency":250}`, `{"token_errors":{"status":500,"count":2,"retry_after":null}}`,
/// `{"lose_refresh_responses":1}`, `{"expire_access_tokens_after_rest_calls":3}`,
/// `{"rate_limit_per_minute":600}`, `{"org_latency":{"org_id":"…","latency":2000}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Every token-endpoint answer (including injected errors) waits this long before anything
    /// else happens, until cleared; zero clears it. The wait comes *before* the state change, so a
    /// client that gives up during the wait leaves its refresh token unredeemed.
    TokenLatency(#[serde(with = "millis")] Duration),
    /// Every successful token answer waits this long *after* the state change (the new pair is
    /// issued, the old refresh token spent), until cleared; zero clears it. A client that dies
    /// during the wait never learns the pair: the crash-after-Snyk-answered case.
    TokenAnswerDelay(#[serde(with = "millis")] Duration),
    /// The next `count` token requests answer `status` (with `Retry-After: retry_after` if set)
    /// without touching any grant.
    TokenErrors {
        /// HTTP status, e.g. 500, 429 or 503 (anything outside 400..=599 is served as 500).
        status: u16,
        /// How many requests get it.
        count: u32,
        /// Seconds for a `Retry-After` header.
        #[serde(default)]
        retry_after: Option<u32>,
    },
    /// Every `/rest/orgs/{org_id}/projects` request for `org_id` waits `latency` before anything
    /// else happens (before the injected errors and every check), until cleared; zero clears it.
    /// Other orgs are answered at once: one slow org among fast ones.
    OrgLatency {
        org_id: Uuid,
        #[serde(with = "millis")]
        latency: Duration,
    },
    /// The same for `/rest/*` requests, with a JSON:API error document.
    RestErrors {
        /// HTTP status, e.g. 500, 429 or 503 (anything outside 400..=599 is served as 500).
        status: u16,
        /// How many requests get it.
        count: u32,
        /// Seconds for a `Retry-After` header.
        #[serde(default)]
        retry_after: Option<u32>,
    },
    /// The next N successful `refresh_token` grants rotate the tokens and then close the
    /// connection without a single byte of answer.
    LoseRefreshResponses(u32),
    /// After N more successful REST calls every live access token expires (0: at once).
    ExpireAccessTokensAfterRestCalls(u32),
    /// The next `count` token requests answer `307 Temporary Redirect` to `location`, without
    /// touching any grant. A client that followed it would re-send its form (client secret,
    /// code or refresh token) to `location`.
    TokenRedirects {
        /// The `Location` header.
        location: String,
        /// How many requests get it.
        count: u32,
    },
    /// The same for `/rest/*` requests: a client that followed it would carry its bearer token
    /// to `location`.
    RestRedirects {
        /// The `Location` header.
        location: String,
        /// How many requests get it.
        count: u32,
    },
    /// Every access token may make at most this many `/rest/*` requests in any minute; past
    /// that, 429 with `Retry-After` (see `ratelimit`), until cleared; zero clears it. The same as
    /// [`crate::Config::rate_limit_per_minute`], which arms it at start.
    RateLimitPerMinute(u32),
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// An error answer handed out by the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InjectedError {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<u32>,
}

#[derive(Debug)]
struct Burst {
    error: InjectedError,
    remaining: u32,
}

/// The armed faults. Lives under the state's lock.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    token_latency: Duration,
    token_answer_delay: Duration,
    token_errors: VecDeque<Burst>,
    rest_errors: VecDeque<Burst>,
    lose_refresh_responses: u32,
    /// Countdowns in order of injection; only the front one runs, so two injections expire the
    /// tokens twice, one after the other.
    expire_after_rest_calls: VecDeque<u32>,
    token_redirects: VecDeque<(String, u32)>,
    rest_redirects: VecDeque<(String, u32)>,
    rate_limit_per_minute: Option<NonZeroU32>,
    org_latency: BTreeMap<Uuid, Duration>,
}

/// What arming a fault requires the caller to do at once.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Armed {
    Nothing,
    ExpireAccessTokensNow,
}

impl Faults {
    pub(crate) fn inject(&mut self, fault: Fault) -> Armed {
        match fault {
            Fault::TokenLatency(latency) => self.token_latency = latency,
            Fault::TokenAnswerDelay(delay) => self.token_answer_delay = delay,
            Fault::TokenErrors {
                status,
                count,
                retry_after,
            } => push_burst(&mut self.token_errors, status, count, retry_after),
            Fault::RestErrors {
                status,
                count,
                retry_after,
            } => push_burst(&mut self.rest_errors, status, count, retry_after),
            Fault::LoseRefreshResponses(n) => {
                self.lose_refresh_responses = self.lose_refresh_responses.saturating_add(n);
            }
            Fault::ExpireAccessTokensAfterRestCalls(0)
                if self.expire_after_rest_calls.is_empty() =>
            {
                return Armed::ExpireAccessTokensNow;
            }
            Fault::ExpireAccessTokensAfterRestCalls(n) => self.expire_after_rest_calls.push_back(n),
            Fault::TokenRedirects { location, count } if count > 0 => {
                self.token_redirects.push_back((location, count));
            }
            Fault::RestRedirects { location, count } if count > 0 => {
                self.rest_redirects.push_back((location, count));
            }
            Fault::TokenRedirects { .. } | Fault::RestRedirects { .. } => {}
            Fault::RateLimitPerMinute(n) => self.rate_limit_per_minute = NonZeroU32::new(n),
            Fault::OrgLatency { org_id, latency } if latency.is_zero() => {
                self.org_latency.remove(&org_id);
            }
            Fault::OrgLatency { org_id, latency } => {
                self.org_latency.insert(org_id, latency);
            }
        }
        Armed::Nothing
    }

    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    pub(crate) fn token_latency(&self) -> Duration {
        self.token_latency
    }

    pub(crate) fn token_answer_delay(&self) -> Duration {
        self.token_answer_delay
    }

    /// How long a projects request for `org_id` waits before it is handled.
    pub(crate) fn org_latency(&self, org_id: Uuid) -> Duration {
        self.org_latency.get(&org_id).copied().unwrap_or_default()
    }

    /// The REST requests each access token may make in a minute, when limited.
    pub(crate) fn rate_limit_per_minute(&self) -> Option<NonZeroU32> {
        self.rate_limit_per_minute
    }

    pub(crate) fn take_token_error(&mut self) -> Option<InjectedError> {
        take_from(&mut self.token_errors)
    }

    pub(crate) fn take_rest_error(&mut self) -> Option<InjectedError> {
        take_from(&mut self.rest_errors)
    }

    /// Where the next token request is redirected to, if it is.
    pub(crate) fn take_token_redirect(&mut self) -> Option<String> {
        take_redirect(&mut self.token_redirects)
    }

    /// Where the next REST request is redirected to, if it is.
    pub(crate) fn take_rest_redirect(&mut self) -> Option<String> {
        take_redirect(&mut self.rest_redirects)
    }

    /// Whether the refresh just applied must lose its answer (and uses up one of them).
    pub(crate) fn take_lost_refresh(&mut self) -> bool {
        if self.lose_refresh_responses > 0 {
            self.lose_refresh_responses -= 1;
            true
        } else {
            false
        }
    }

    /// Counts one successful REST call; true when access tokens must expire now.
    pub(crate) fn rest_call_succeeded(&mut self) -> bool {
        let Some(front) = self.expire_after_rest_calls.front_mut() else {
            return false;
        };
        *front = front.saturating_sub(1);
        if *front > 0 {
            return false;
        }
        self.expire_after_rest_calls.pop_front();
        true
    }
}

fn push_burst(queue: &mut VecDeque<Burst>, status: u16, count: u32, retry_after: Option<u32>) {
    if count == 0 {
        return;
    }
    let status = if (400..=599).contains(&status) {
        status
    } else {
        tracing::warn!(
            status,
            "injected error status outside 400..=599, serving 500"
        );
        500
    };
    queue.push_back(Burst {
        error: InjectedError {
            status,
            retry_after,
        },
        remaining: count,
    });
}

fn take_redirect(queue: &mut VecDeque<(String, u32)>) -> Option<String> {
    let (location, remaining) = queue.front_mut()?;
    let location = location.clone();
    *remaining -= 1;
    if *remaining == 0 {
        queue.pop_front();
    }
    Some(location)
}

/// `307 Temporary Redirect` to `location` (the status that keeps the method and the body, the
/// most tempting one to follow).
pub(crate) fn redirect_response(location: &str) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match axum::http::HeaderValue::from_str(location) {
        Ok(value) => (
            axum::http::StatusCode::TEMPORARY_REDIRECT,
            [(axum::http::header::LOCATION, value)],
        )
            .into_response(),
        Err(_) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "injected redirect: the location is not a valid header value",
        )
            .into_response(),
    }
}

fn take_from(queue: &mut VecDeque<Burst>) -> Option<InjectedError> {
    let front = queue.front_mut()?;
    let error = front.error;
    front.remaining -= 1;
    if front.remaining == 0 {
        queue.pop_front();
    }
    Some(error)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bursts_are_served_in_order_of_injection() {
        let mut faults = Faults::default();
        faults.inject(Fault::TokenErrors {
            status: 500,
            count: 2,
            retry_after: None,
        });
        faults.inject(Fault::TokenErrors {
            status: 429,
            count: 1,
            retry_after: Some(7),
        });
        let seen: Vec<u16> = std::iter::from_fn(|| faults.take_token_error())
            .map(|e| e.status)
            .collect();
        assert_eq!(seen, [500, 500, 429]);
        assert!(faults.take_rest_error().is_none());
    }

    #[test]
    fn expiry_countdowns_run_one_after_the_other() {
        let mut faults = Faults::default();
        faults.inject(Fault::ExpireAccessTokensAfterRestCalls(2));
        faults.inject(Fault::ExpireAccessTokensAfterRestCalls(1));
        let fired: Vec<bool> = (0..4).map(|_| faults.rest_call_succeeded()).collect();
        assert_eq!(fired, [false, true, true, false]);
        assert_eq!(
            faults.inject(Fault::ExpireAccessTokensAfterRestCalls(0)),
            Armed::ExpireAccessTokensNow
        );
    }

    #[test]
    fn json_form_is_snake_case_with_millis() {
        let fault: Fault =
            serde_json::from_str(r#"{"token_errors":{"status":500,"count":2,"retry_after":null}}"#)
                .unwrap();
        assert_eq!(
            fault,
            Fault::TokenErrors {
                status: 500,
                count: 2,
                retry_after: None
            }
        );
        let latency: Fault = serde_json::from_str(r#"{"token_latency":250}"#).unwrap();
        assert_eq!(latency, Fault::TokenLatency(Duration::from_millis(250)));
        assert_eq!(
            serde_json::to_string(&Fault::LoseRefreshResponses(1)).unwrap(),
            r#"{"lose_refresh_responses":1}"#
        );
        assert!(serde_json::from_str::<Fault>(r#"{"nonsense":1}"#).is_err());
        let limit: Fault = serde_json::from_str(r#"{"rate_limit_per_minute":600}"#).unwrap();
        assert_eq!(limit, Fault::RateLimitPerMinute(600));
        let org_id = Uuid::from_u128(7);
        let slow: Fault = serde_json::from_str(&format!(
            r#"{{"org_latency":{{"org_id":"{org_id}","latency":2000}}}}"#
        ))
        .unwrap();
        assert_eq!(
            slow,
            Fault::OrgLatency {
                org_id,
                latency: Duration::from_secs(2)
            }
        );
        let redirect: Fault =
            serde_json::from_str(r#"{"token_redirects":{"location":"http://x/","count":1}}"#)
                .unwrap();
        assert_eq!(
            redirect,
            Fault::TokenRedirects {
                location: "http://x/".into(),
                count: 1
            }
        );
    }

    #[test]
    fn redirects_are_served_count_times_in_order() {
        let mut faults = Faults::default();
        faults.inject(Fault::RestRedirects {
            location: "a".into(),
            count: 2,
        });
        faults.inject(Fault::RestRedirects {
            location: "b".into(),
            count: 0,
        });
        faults.inject(Fault::RestRedirects {
            location: "c".into(),
            count: 1,
        });
        let seen: Vec<String> = std::iter::from_fn(|| faults.take_rest_redirect()).collect();
        assert_eq!(seen, ["a", "a", "c"]);
        assert!(faults.take_token_redirect().is_none());
    }
}
