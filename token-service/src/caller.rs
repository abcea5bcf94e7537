//! Who is calling and what they may call: every TokenService call presents
//! `authorization: Bearer <key>` (`TOKEN_SERVICE_CLIENT_KEYS`) and may call only the RPCs its
//! caller is granted (`TOKEN_SERVICE_CALLER_RPCS`) (docs/design.md, invariants 5 and 8).
//!
//! Both checks run in one tower layer, [`Authorize`], in front of the generated server rather than
//! in a tonic interceptor: an interceptor sees metadata but not the request path, so it cannot
//! tell which RPC is called. Doing both in one place keeps "who" and "may they" together and the
//! handlers free of permission code; they read the [`AuthenticatedCaller`] it leaves in the request
//! extensions. gRPC health and reflection are separate services and are not wrapped.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use caller_auth::{ClientKeys, Rejection};
use futures::future::{BoxFuture, Either};
use secrecy::SecretString;
use snykapps_proto::token_service::{SERVICE_NAME, path};
use tonic::{Status, server::NamedService};

/// One TokenService method. Grants name these, never strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rpc {
    CompleteInstall,
    GetAccessToken,
    ForceRefresh,
    GetInstall,
    ListInstalls,
    DeleteInstall,
    WatchInstallEvents,
    AcquireSnykPermit,
}

impl Rpc {
    pub const ALL: [Rpc; 8] = [
        Rpc::CompleteInstall,
        Rpc::GetAccessToken,
        Rpc::ForceRefresh,
        Rpc::GetInstall,
        Rpc::ListInstalls,
        Rpc::DeleteInstall,
        Rpc::WatchInstallEvents,
        Rpc::AcquireSnykPermit,
    ];

    /// The method name, as in the proto: the last segment of [`Rpc::path`].
    pub fn name(self) -> &'static str {
        let path = self.path();
        path.rsplit_once('/').map_or(path, |(_, method)| method)
    }

    /// The request path, `/snykapps.token.v1.TokenService/<Rpc>`, from the contract's crate.
    pub fn path(self) -> &'static str {
        match self {
            Rpc::CompleteInstall => path::COMPLETE_INSTALL,
            Rpc::GetAccessToken => path::GET_ACCESS_TOKEN,
            Rpc::ForceRefresh => path::FORCE_REFRESH,
            Rpc::GetInstall => path::GET_INSTALL,
            Rpc::ListInstalls => path::LIST_INSTALLS,
            Rpc::DeleteInstall => path::DELETE_INSTALL,
            Rpc::WatchInstallEvents => path::WATCH_INSTALL_EVENTS,
            Rpc::AcquireSnykPermit => path::ACQUIRE_SNYK_PERMIT,
        }
    }

    pub fn from_name(name: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The RPC a request path names (`/snykapps.token.v1.TokenService/<Rpc>`).
    pub fn from_path(path: &str) -> Option<Rpc> {
        let method = path
            .strip_prefix('/')?
            .strip_prefix(SERVICE_NAME)?
            .strip_prefix('/')?;
        Rpc::from_name(method)
    }

    fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

impl fmt::Display for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The RPCs one caller may call.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct RpcSet(u16);

impl RpcSet {
    pub const ALL: RpcSet = RpcSet((1 << Rpc::ALL.len()) - 1);

    pub fn of(rpcs: &[Rpc]) -> RpcSet {
        RpcSet(rpcs.iter().fold(0, |bits, r| bits | r.bit()))
    }

    pub fn contains(self, rpc: Rpc) -> bool {
        self.0 & rpc.bit() != 0
    }
}

impl fmt::Debug for RpcSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(Rpc::ALL.into_iter().filter(|r| self.contains(*r)))
            .finish()
    }
}

/// The caller an RPC was authenticated as: a request extension, logged and used as a metric label
/// by name (names come from configuration, so label values stay bounded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedCaller(pub Arc<str>);

impl AuthenticatedCaller {
    pub fn name(&self) -> &str {
        &self.0
    }
}

const RPCS_VAR: &str = "TOKEN_SERVICE_CALLER_RPCS";
const KEYS_VAR: &str = "TOKEN_SERVICE_CLIENT_KEYS";

/// Every RPC's name, comma-separated, in the contract's order.
fn known_rpcs() -> String {
    Rpc::ALL.map(Rpc::name).join(", ")
}

/// Why `TOKEN_SERVICE_CALLER_RPCS` was refused. Names callers and RPCs, never a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantsError {
    #[error("{RPCS_VAR} must be `caller=Rpc+Rpc,…` (`*` = every RPC); entry {0} is not")]
    Malformed(usize),
    #[error(
        "{RPCS_VAR}: caller {caller:?} lists unknown RPC {rpc} (known: {}, or *)",
        known_rpcs()
    )]
    UnknownRpc { caller: String, rpc: String },
    #[error("{RPCS_VAR} lists caller {0:?} twice")]
    Duplicate(String),
    #[error("{RPCS_VAR} grants caller {0:?}, which has no key in {KEYS_VAR}")]
    NoKey(String),
    #[error("{RPCS_VAR} has no entry for caller {0:?} of {KEYS_VAR}: list the RPCs it may call")]
    Missing(String),
}

/// Who may call (their keys) and what (their RPCs). Built once at start-up.
pub struct Callers {
    keys: Arc<ClientKeys>,
    grants: Vec<(Arc<str>, RpcSet)>,
}

impl fmt::Debug for Callers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names and grants only: `ClientKeys` hides the keys, and so does this.
        f.debug_map()
            .entries(self.grants.iter().map(|(c, g)| (c.as_ref(), g)))
            .finish()
    }
}

impl Callers {
    /// `keys` parsed from `TOKEN_SERVICE_CLIENT_KEYS` and `rpcs_spec`, the value of
    /// `TOKEN_SERVICE_CALLER_RPCS`.
    pub fn parse(keys: Arc<ClientKeys>, rpcs_spec: &str) -> Result<Callers, GrantsError> {
        let mut grants: Vec<(Arc<str>, RpcSet)> = Vec::new();
        let entries = rpcs_spec
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty());
        for (i, entry) in entries.enumerate() {
            let (caller, list) = match entry.split_once('=') {
                Some((c, l)) if !c.trim().is_empty() && !l.trim().is_empty() => {
                    (c.trim(), l.trim())
                }
                _ => return Err(GrantsError::Malformed(i + 1)),
            };
            let mut set = RpcSet::default();
            for name in list.split('+').map(str::trim) {
                set = match (name, Rpc::from_name(name)) {
                    ("*", _) => RpcSet::ALL,
                    (_, Some(rpc)) => RpcSet(set.0 | rpc.bit()),
                    (_, None) => {
                        return Err(GrantsError::UnknownRpc {
                            caller: caller.to_owned(),
                            rpc: shown(&keys, name),
                        });
                    }
                };
            }
            if grants.iter().any(|(c, _)| c.as_ref() == caller) {
                return Err(GrantsError::Duplicate(caller.to_owned()));
            }
            grants.push((Arc::from(caller), set));
        }
        let key_callers: Vec<&str> = keys.callers().collect();
        if let Some((c, _)) = grants
            .iter()
            .find(|(c, _)| !key_callers.contains(&c.as_ref()))
        {
            return Err(GrantsError::NoKey(c.to_string()));
        }
        if let Some(c) = key_callers
            .iter()
            .find(|k| !grants.iter().any(|(c, _)| c.as_ref() == **k))
        {
            return Err(GrantsError::Missing((*c).to_owned()));
        }
        Ok(Callers { keys, grants })
    }

    /// Authenticates the `authorization` header, then checks that its caller may call the RPC
    /// at `path`. A path that names no RPC this layer knows is refused: a method added to the
    /// contract but not to [`Rpc`] must not be open to every keyed caller.
    pub fn admit(
        &self,
        path: &str,
        authorization: Option<&[u8]>,
    ) -> Result<AuthenticatedCaller, Refusal> {
        let name = self
            .keys
            .authenticate(authorization)
            .map_err(Refusal::Unauthenticated)?;
        // Parse-time checks give every keyed caller an entry; without one it is granted nothing.
        let (caller, granted) = self
            .grants
            .iter()
            .find(|(c, _)| c.as_ref() == name)
            .map_or_else(
                || (Arc::from(name), RpcSet::default()),
                |(c, g)| (Arc::clone(c), *g),
            );
        match Rpc::from_path(path) {
            Some(rpc) if granted.contains(rpc) => Ok(AuthenticatedCaller(caller)),
            Some(rpc) => Err(Refusal::NotGranted {
                caller: AuthenticatedCaller(caller),
                rpc,
            }),
            None => Err(Refusal::UnknownRpc),
        }
    }
}

/// Why a call was refused before it reached the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No key, a malformed header or an unknown key.
    Unauthenticated(Rejection),
    /// A known caller asking for an RPC it is not granted.
    NotGranted {
        caller: AuthenticatedCaller,
        rpc: Rpc,
    },
    /// A path under the service that names no RPC this layer knows.
    UnknownRpc,
}

impl Refusal {
    /// Refused calls are audited like the calls they would have been (never with the key): a
    /// caller asking beyond its grant, and anyone presenting no key or an unknown one (key
    /// guessing leaves a trace). `rpc` is the method the path names, if any (the path itself is
    /// the client's and is not logged).
    fn audit(&self, rpc: Option<Rpc>) {
        let rpc_name = rpc.map_or("other", Rpc::name);
        match self {
            Refusal::NotGranted { caller, rpc } => tracing::warn!(
                target: "audit",
                caller = caller.name(),
                rpc = rpc.name(),
                outcome = "PermissionDenied",
                "call refused: RPC not granted to this caller"
            ),
            Refusal::Unauthenticated(why) => tracing::warn!(
                target: "audit",
                rpc = rpc_name,
                outcome = "Unauthenticated",
                reason = %why,
                "call refused: no known key"
            ),
            Refusal::UnknownRpc => {}
        }
    }
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        match r {
            Refusal::Unauthenticated(r) => Status::unauthenticated(r.to_string()),
            Refusal::NotGranted { caller, rpc } => Status::permission_denied(format!(
                "caller {} may not call {rpc} (TOKEN_SERVICE_CALLER_RPCS)",
                caller.name()
            )),
            Refusal::UnknownRpc => Status::unimplemented("no such method"),
        }
    }
}

/// An unknown RPC name as it may appear in an error: a key pasted into the wrong variable is not
/// repeated, nor is anything that does not look like a method name.
fn shown(keys: &ClientKeys, name: &str) -> String {
    let plausible = !name.is_empty()
        && name.len() <= 40
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plausible
        && keys
            .identify(&SecretString::from(name.to_owned()))
            .is_none()
    {
        format!("{name:?}")
    } else {
        "(a value that is not shown: it does not look like an RPC name)".to_owned()
    }
}

/// The tower layer in front of the TokenService server: [`Callers::admit`] every call, answer
/// the refused ones with their status, tag the others with [`AuthenticatedCaller`].
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    callers: Arc<Callers>,
}

impl<S> Authorize<S> {
    pub fn new(inner: S, callers: Arc<Callers>) -> Self {
        Authorize { inner, callers }
    }
}

// Routed by the wrapped service's name, as tonic's own `InterceptedService` is.
impl<S: NamedService> NamedService for Authorize<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Authorize<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<BoxFuture<'static, Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let admitted = self.callers.admit(
            req.uri().path(),
            req.headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
        );
        match admitted {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                Either::Right(self.inner.call(req))
            }
            // Audited when polled: tonic enters the RPC's span (request id, trace) around polls,
            // not around `call`.
            Err(refusal) => {
                let rpc = Rpc::from_path(req.uri().path());
                Either::Left(Box::pin(async move {
                    refusal.audit(rpc);
                    Ok(Status::from(refusal).into_http())
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tonic::Code;

    const KEYS: &str = "projects-service=aaaaaaaaaaaaaaaa1, auth-service=bbbbbbbbbbbbbbbb2";

    fn callers(rpcs: &str) -> Result<Callers, GrantsError> {
        let keys = Arc::new(ClientKeys::parse(KEYS_VAR, KEYS).unwrap());
        Callers::parse(keys, rpcs)
    }

    fn path(rpc: Rpc) -> String {
        format!("/{SERVICE_NAME}/{rpc}")
    }

    #[test]
    fn rpc_paths_are_the_service_and_the_name() {
        for rpc in Rpc::ALL {
            assert_eq!(rpc.path(), format!("/{SERVICE_NAME}/{rpc}"));
            assert_eq!(Rpc::from_path(rpc.path()), Some(rpc));
        }
    }

    #[test]
    fn rpc_names_round_trip_through_paths() {
        for rpc in Rpc::ALL {
            assert_eq!(Rpc::from_path(&path(rpc)), Some(rpc));
        }
        assert_eq!(Rpc::from_path("/snykapps.token.v1.TokenService/Nope"), None);
        assert_eq!(Rpc::from_path("/grpc.health.v1.Health/Check"), None);
        assert_eq!(RpcSet::of(&Rpc::ALL), RpcSet::ALL);
    }

    #[test]
    fn grants_are_enforced_per_caller_and_rpc() {
        let c = callers("projects-service=GetAccessToken+ForceRefresh, auth-service=*").unwrap();
        let projects = Some(&b"Bearer aaaaaaaaaaaaaaaa1"[..]);
        let auth = Some(&b"Bearer bbbbbbbbbbbbbbbb2"[..]);
        for rpc in Rpc::ALL {
            let allowed = matches!(rpc, Rpc::GetAccessToken | Rpc::ForceRefresh);
            match c.admit(&path(rpc), projects) {
                Ok(caller) => {
                    assert!(allowed, "{rpc} let through");
                    assert_eq!(caller.name(), "projects-service");
                }
                Err(r) => {
                    assert!(!allowed, "{rpc} refused");
                    let s = Status::from(r);
                    assert_eq!(s.code(), Code::PermissionDenied);
                    assert!(s.message().contains(rpc.name()), "{}", s.message());
                    assert!(!s.message().contains("aaaaaaaa"), "{}", s.message());
                }
            }
            assert_eq!(c.admit(&path(rpc), auth).unwrap().name(), "auth-service");
        }
        // Authentication comes first, whatever the RPC.
        let err = c.admit(&path(Rpc::DeleteInstall), None).unwrap_err();
        assert_eq!(Status::from(err).code(), Code::Unauthenticated);
        // A path that is no RPC is UNIMPLEMENTED here, and only for a known caller.
        let err = c
            .admit("/snykapps.token.v1.TokenService/Nope", projects)
            .unwrap_err();
        assert_eq!(Status::from(err).code(), Code::Unimplemented);
    }

    #[test]
    fn bad_grants_name_the_caller_or_rpc() {
        let cases = [
            (
                "projects-service=GetAccessToken",
                GrantsError::Missing("auth-service".into()),
            ),
            (
                "projects-service=*,auth-service=*,ops=*",
                GrantsError::NoKey("ops".into()),
            ),
            (
                "projects-service=GetAccesToken,auth-service=*",
                GrantsError::UnknownRpc {
                    caller: "projects-service".into(),
                    rpc: "\"GetAccesToken\"".into(),
                },
            ),
            (
                "projects-service=*,projects-service=*,auth-service=*",
                GrantsError::Duplicate("projects-service".into()),
            ),
            ("projects-service", GrantsError::Malformed(1)),
            (
                "auth-service=*,projects-service=",
                GrantsError::Malformed(2),
            ),
            ("", GrantsError::Missing("projects-service".into())),
        ];
        for (spec, expected) in cases {
            assert_eq!(callers(spec).unwrap_err(), expected, "{spec}");
        }
        let err = callers("projects-service=GetAccesToken,auth-service=*").unwrap_err();
        assert!(
            err.to_string().contains("TOKEN_SERVICE_CALLER_RPCS"),
            "{err}"
        );
        assert!(err.to_string().contains("GetAccesToken"), "{err}");
    }

    #[test]
    fn a_key_pasted_as_an_rpc_is_not_repeated() {
        let err = callers("projects-service=aaaaaaaaaaaaaaaa1,auth-service=*").unwrap_err();
        assert!(!err.to_string().contains("aaaaaaaa"), "{err}");
        assert!(err.to_string().contains("projects-service"), "{err}");
    }

    /// Every method of the contract is an [`Rpc`] (and no more): a new RPC cannot be added to
    /// the proto without deciding who may call it.
    #[test]
    fn every_method_of_the_contract_is_an_rpc() {
        use prost::Message as _;
        let fds = prost_types::FileDescriptorSet::decode(snykapps_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut methods: Vec<String> = fds
            .file
            .iter()
            .flat_map(|f| &f.service)
            .filter(|svc| svc.name() == "TokenService")
            .flat_map(|svc| &svc.method)
            .map(|m| m.name().to_owned())
            .collect();
        methods.sort();
        let mut ours: Vec<String> = Rpc::ALL.iter().map(|r| r.name().to_owned()).collect();
        ours.sort();
        assert_eq!(methods, ours);
    }

    #[test]
    fn paths_that_name_no_rpc_are_refused() {
        let callers = callers("projects-service=*,auth-service=*").unwrap();
        for path in [
            "/snykapps.token.v1.TokenService/GetAccessToken/extra",
            "/snykapps.token.v1.TokenService/getaccesstoken",
            "/snykapps.token.v1.TokenService/",
            "/snykapps.token.v1.TokenService/NewMethod",
        ] {
            assert_eq!(
                callers
                    .admit(path, Some(b"Bearer aaaaaaaaaaaaaaaa1"))
                    .unwrap_err(),
                Refusal::UnknownRpc,
                "{path}"
            );
        }
    }
}
