//! The values of the counters' labels: one enum per label, whose declaration order is each
//! value's slot in the counters' arrays (`outcomes_have_their_own_slots`).

/// The Snyk endpoints token-service calls: the `endpoint` label of `snykapps.snyk.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnykEndpoint {
    /// `POST /oauth2/token`: code exchanges and refreshes.
    Token,
    /// `POST /oauth2/revoke`.
    Revoke,
    /// `GET /rest/orgs`: a new install's orgs.
    Orgs,
}

impl SnykEndpoint {
    pub const ALL: [SnykEndpoint; 3] = [
        SnykEndpoint::Token,
        SnykEndpoint::Revoke,
        SnykEndpoint::Orgs,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            SnykEndpoint::Token => "oauth2/token",
            SnykEndpoint::Revoke => "oauth2/revoke",
            SnykEndpoint::Orgs => "rest/orgs",
        }
    }
}

/// How a token was handed out: the `served` label of `snykapps.token.requests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The stored token, no refresh due.
    Stored,
    /// The stored token, inside the margin but above the floor: a refresh runs in the background.
    AheadOfRefresh,
    /// After waiting for a refresh.
    AfterRefresh,
}

impl Served {
    pub(super) const ALL: [Served; 3] =
        [Served::Stored, Served::AheadOfRefresh, Served::AfterRefresh];
    /// The `served` label of a failed request: no token was handed out.
    pub(super) const NONE: &'static str = "none";

    pub(super) fn label(self) -> &'static str {
        match self {
            Served::Stored => "stored",
            Served::AheadOfRefresh => "ahead",
            Served::AfterRefresh => "refreshed",
        }
    }
}

/// How a refresh at Snyk's token endpoint ended (the `outcome` of `snykapps.token.refreshes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The new pair is stored.
    Ok,
    /// Snyk refused the refresh token: the install needs re-authorization.
    InvalidGrant,
    /// Snyk may have redeemed the token but its new pair is not stored (lost answer, failed
    /// write).
    InDoubt,
    /// Snyk was not reached, or said no without redeeming: tried again later.
    Unavailable,
}

impl RefreshOutcome {
    pub const ALL: [RefreshOutcome; 4] = [
        RefreshOutcome::Ok,
        RefreshOutcome::InvalidGrant,
        RefreshOutcome::InDoubt,
        RefreshOutcome::Unavailable,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            RefreshOutcome::Ok => "ok",
            RefreshOutcome::InvalidGrant => "invalid_grant",
            RefreshOutcome::InDoubt => "in_doubt",
            RefreshOutcome::Unavailable => "unavailable",
        }
    }
}

/// How a permit of an install's Snyk request budget was asked for (`snykapps.snyk.permits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermitOutcome {
    Granted,
    Waited,
    /// None before the caller's deadline.
    Refused,
}

impl PermitOutcome {
    pub const ALL: [PermitOutcome; 3] = [
        PermitOutcome::Granted,
        PermitOutcome::Waited,
        PermitOutcome::Refused,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            PermitOutcome::Granted => "granted",
            PermitOutcome::Waited => "waited",
            PermitOutcome::Refused => "refused",
        }
    }
}

/// What the keep-alive sweeper did with one due install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAliveOutcome {
    /// Its refresh token is fresh again (refreshed here or by another replica).
    Refreshed,
    /// Not due after all (its index entry lagged); re-scored.
    NotDue,
    /// Another replica has a request out for it; left to that replica.
    InProgress,
    NeedsReauth,
    /// Snyk or Redis failed; tried again next sweep.
    Unavailable,
}

impl KeepAliveOutcome {
    pub const ALL: [KeepAliveOutcome; 5] = [
        KeepAliveOutcome::Refreshed,
        KeepAliveOutcome::NotDue,
        KeepAliveOutcome::InProgress,
        KeepAliveOutcome::NeedsReauth,
        KeepAliveOutcome::Unavailable,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            KeepAliveOutcome::Refreshed => "refreshed",
            KeepAliveOutcome::NotDue => "not_due",
            KeepAliveOutcome::InProgress => "in_progress",
            KeepAliveOutcome::NeedsReauth => "needs_reauth",
            KeepAliveOutcome::Unavailable => "unavailable",
        }
    }
}
