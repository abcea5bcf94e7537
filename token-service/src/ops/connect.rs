//! Where the operator tools find token-service and which key they present there.
//!
//! The URL: `--url`, else `TOKEN_SERVICE_URL` (its first replica: they share one Redis, so any
//! one answers for all), else the service's own `TOKEN_SERVICE_ADDR` on this machine, the way
//! `token-service healthcheck` reaches it (https to `localhost` when `TOKEN_SERVICE_TLS_CERT` is
//! set). TLS trusts `TOKEN_SERVICE_CA_CERT` when set, else the public roots: the channel is
//! `service_runtime::grpc::channel`, built as every other caller of token-service builds it.
//!
//! The key: `--key-file`, else `--caller`'s key in `TOKEN_SERVICE_CLIENT_KEYS` when `--caller`
//! is given, else `TOKEN_SERVICE_API_KEY`, else the key of caller `ops` in
//! `TOKEN_SERVICE_CLIENT_KEYS` (the service's own environment, read with the service's parser).
//! The key is a `SecretString` and travels only in a sensitive `authorization` header.

use std::{fmt, path::PathBuf, time::Duration};

use caller_auth::ClientKeys;
use secrecy::{ExposeSecret, SecretString};
use service_runtime::{
    config::{Env, header_safe},
    grpc::{self, TokenServiceUrls},
    healthcheck::LocalGrpc,
    internal::{InternalCa, InternalHops},
};
use snykapps_proto::token_v1::token_service_client::TokenServiceClient;
use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};
use url::Url;

use super::error::OpsError;
use crate::config;

/// The caller whose key is taken from `TOKEN_SERVICE_CLIENT_KEYS` unless told otherwise.
pub const DEFAULT_CALLER: &str = "ops";

/// How long one unary call may take once sent (connecting is bounded separately, 3 s, and a TLS
/// handshake 3 s more), and how long a stream may take to start.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

const KEYS_VAR: &str = "TOKEN_SERVICE_CLIENT_KEYS";
const API_KEY_VAR: &str = "TOKEN_SERVICE_API_KEY";

/// How to reach token-service: the options every operator command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectArgs {
    /// token-service's gRPC URL [default: TOKEN_SERVICE_URL, else TOKEN_SERVICE_ADDR's port on
    /// this machine]
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// A file whose content is the key to present [default: TOKEN_SERVICE_API_KEY, else the
    /// key of caller `ops` in TOKEN_SERVICE_CLIENT_KEYS]
    #[arg(long, global = true, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Take this caller's key from TOKEN_SERVICE_CLIENT_KEYS [default: ops]
    #[arg(long, global = true, value_name = "NAME")]
    pub caller: Option<String>,
}

/// Where the key came from: named in errors (the key itself never is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    ApiKeyVar,
    Caller(String),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::File(path) => write!(f, "the key in --key-file {}", path.display()),
            KeySource::ApiKeyVar => write!(f, "the key in {API_KEY_VAR}"),
            KeySource::Caller(c) => write!(f, "the key of caller `{c}` in {KEYS_VAR}"),
        }
    }
}

/// The key to present, and where it came from. `Debug` shows the source only.
pub struct Key {
    secret: SecretString,
    pub source: KeySource,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// The key as the options and the environment give it (see the module docs for the order).
    pub fn resolve(args: &ConnectArgs, env: &Env<'_>) -> Result<Key, OpsError> {
        if let Some(path) = &args.key_file {
            return Key::from_file(path);
        }
        // Either way of giving a secret counts: the value, or `<NAME>_FILE`.
        if args.caller.is_none() && env.secret_is_set(API_KEY_VAR) {
            let secret = env
                .header_secret(API_KEY_VAR)
                .map_err(|e| OpsError::Failed(format!("{e:#}")))?;
            return Ok(Key {
                secret,
                source: KeySource::ApiKeyVar,
            });
        }
        let caller = args.caller.as_deref().unwrap_or(DEFAULT_CALLER);
        let no_key = || {
            OpsError::Usage(format!(
                "no key: pass --key-file, set {API_KEY_VAR}, or give caller `{caller}` a key in {KEYS_VAR}"
            ))
        };
        if !env.secret_is_set(KEYS_VAR) {
            return Err(no_key());
        }
        // `required` refuses the .env.example placeholder and, outside demo mode, the published
        // demo keys, exactly as the service does when it starts.
        let spec = env
            .required(KEYS_VAR)
            .map_err(|e| OpsError::Failed(format!("{e:#}")))?;
        let secret = ClientKeys::key_of(KEYS_VAR, &spec, caller)
            .map_err(|e| OpsError::Failed(e.to_string()))?
            .ok_or_else(no_key)?;
        Key::checked(secret, KeySource::Caller(caller.to_owned()))
    }

    fn from_file(path: &PathBuf) -> Result<Key, OpsError> {
        let shown = path.display();
        let raw = std::fs::read_to_string(path)
            .map_err(|e| OpsError::Failed(format!("--key-file: cannot read {shown} ({e})")))?;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(OpsError::Failed(format!(
                "--key-file: {shown} is empty; it must hold the key"
            )));
        }
        Key::checked(
            SecretString::from(trimmed.to_owned()),
            KeySource::File(path.clone()),
        )
    }

    /// `text` with every copy of the key replaced by where it came from.
    pub fn hidden_in(&self, text: &str) -> String {
        text.replace(self.secret.expose_secret(), &format!("({})", self.source))
    }

    /// A key that can travel in a header ([`header_safe`]).
    fn checked(secret: SecretString, source: KeySource) -> Result<Key, OpsError> {
        if !header_safe(secret.expose_secret()) {
            return Err(OpsError::Failed(format!(
                "{source} must be printable ASCII without spaces"
            )));
        }
        Ok(Key { secret, source })
    }
}

/// token-service's URL and the CA to trust for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: Url,
    ca: Option<Vec<u8>>,
}

impl Target {
    /// The URL as the options and the environment give it (see the module docs for the order).
    pub fn resolve(args: &ConnectArgs, env: &Env<'_>) -> Result<Target, OpsError> {
        let url = match (&args.url, env.optional(TokenServiceUrls::VAR)) {
            (Some(raw), _) => {
                let urls = TokenServiceUrls::parse("--url", raw)
                    .map_err(|e| OpsError::Usage(format!("{e:#}")))?;
                if urls.len() > 1 {
                    return Err(OpsError::Usage(
                        "--url takes one URL (any replica answers for all)".into(),
                    ));
                }
                first(&urls)?
            }
            (None, Some(raw)) => first(
                &TokenServiceUrls::parse(TokenServiceUrls::VAR, &raw)
                    .map_err(|e| OpsError::Failed(format!("{e:#}")))?,
            )?,
            // As the healthcheck reaches it.
            (None, None) => {
                LocalGrpc::resolve(env, config::ADDR_VAR, config::DEFAULT_ADDR)
                    .map_err(|e| OpsError::Failed(format!("{e:#}")))?
                    .url
            }
        };
        // The ops key travels with every call: the services' rule for plain text applies (no
        // http:// to another host outside demo mode unless INTERNAL_PLAINTEXT=allow).
        let failed = |e: anyhow::Error| OpsError::Failed(format!("{e:#}"));
        let var = if args.url.is_some() {
            "--url"
        } else {
            TokenServiceUrls::VAR
        };
        let mut hops = InternalHops::from_env(env).map_err(failed)?;
        hops.check(var, [&url]).map_err(failed)?;
        hops.warn_plaintext();
        let ca = InternalCa::from_env(env, "TOKEN_SERVICE_CA_CERT")
            .map_err(failed)?
            .map(|ca| ca.pem().to_vec());
        Ok(Target { url, ca })
    }
}

/// The first URL of a parsed list (which holds at least one).
fn first(urls: &TokenServiceUrls) -> Result<Url, OpsError> {
    urls.iter()
        .next()
        .cloned()
        .ok_or_else(|| OpsError::Failed(format!("{} lists no URL", TokenServiceUrls::VAR)))
}

/// Adds `authorization: Bearer <key>` (a sensitive header value) to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer(<hidden>)")
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub type Client = TokenServiceClient<InterceptedService<Channel, Bearer>>;

/// A lazily connecting client of `target` presenting `key`.
pub fn client(target: &Target, key: &Key) -> Result<Client, OpsError> {
    let channel = grpc::channel(&target.url, target.ca.as_deref(), CALL_TIMEOUT)
        .map_err(|e| OpsError::Failed(format!("{e:#}")))?;
    let value = grpc::bearer(&key.secret).ok_or_else(|| {
        OpsError::Failed(format!(
            "{} must be printable ASCII without spaces",
            key.source
        ))
    })?;
    Ok(TokenServiceClient::with_interceptor(channel, Bearer(value)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const KEY: &str = "ops-key-0123456789abcdef";

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> Env<'a> {
        Env::new(move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    fn args() -> ConnectArgs {
        ConnectArgs::default()
    }

    #[test]
    fn the_url_comes_from_the_option_the_variable_or_the_service_address() {
        let url = |a: &ConnectArgs, pairs: &[(&str, &str)]| {
            Target::resolve(a, &env(pairs)).unwrap().url.to_string()
        };
        assert_eq!(url(&args(), &[]), "http://127.0.0.1:50051/");
        assert_eq!(
            url(&args(), &[("TOKEN_SERVICE_ADDR", "0.0.0.0:7000")]),
            "http://127.0.0.1:7000/"
        );
        assert_eq!(
            url(
                &args(),
                &[
                    ("TOKEN_SERVICE_ADDR", "0.0.0.0:7000"),
                    ("TOKEN_SERVICE_TLS_CERT", "/etc/tls/cert.pem")
                ]
            ),
            "https://localhost:7000/"
        );
        let with_var = [
            ("TOKEN_SERVICE_URL", "http://a:1,http://b:2"),
            ("TOKEN_SERVICE_ADDR", "0.0.0.0:7000"),
            ("INTERNAL_PLAINTEXT", "allow"),
        ];
        assert_eq!(url(&args(), &with_var), "http://a:1/");
        let explicit = ConnectArgs {
            url: Some("https://token.example:443".into()),
            ..args()
        };
        assert_eq!(url(&explicit, &with_var), "https://token.example/");
    }

    #[test]
    fn the_ops_key_never_goes_in_clear_to_another_host() {
        let remote = ConnectArgs {
            url: Some("http://token-service.prod:50051".into()),
            ..args()
        };
        let err = Target::resolve(&remote, &env(&[])).unwrap_err().to_string();
        assert!(
            err.contains("--url") && err.contains("INTERNAL_PLAINTEXT"),
            "{err}"
        );
        let err = Target::resolve(&args(), &env(&[("TOKEN_SERVICE_URL", "http://t:1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("TOKEN_SERVICE_URL"), "{err}");
        for allowed in [
            &[("DEMO_MODE", "true")][..],
            &[("INTERNAL_PLAINTEXT", "allow")],
        ] {
            Target::resolve(&remote, &env(allowed)).unwrap();
        }
        let ca = [("TOKEN_SERVICE_CA_CERT", "/nonexistent/ca.pem")];
        let err = Target::resolve(&args(), &env(&ca)).unwrap_err().to_string();
        assert!(err.contains("TOKEN_SERVICE_CA_CERT"), "{err}");
    }

    #[test]
    fn a_bad_url_is_a_usage_error_naming_the_option() {
        for bad in ["not a url", "ftp://x:1", "http://a:1,http://b:1"] {
            let a = ConnectArgs {
                url: Some(bad.into()),
                ..args()
            };
            let err = Target::resolve(&a, &env(&[])).unwrap_err();
            assert!(matches!(err, OpsError::Usage(_)), "{bad}: {err:?}");
            assert!(err.to_string().contains("--url"), "{err}");
        }
    }

    #[test]
    fn the_key_comes_from_the_file_the_variable_or_the_callers_entry() {
        let keys =
            format!("auth-service=auth-key-0123456789ab,ops={KEY},tests=tests-key-0123456789ab");
        let with_keys = [(KEYS_VAR, keys.as_str())];
        let key = Key::resolve(&args(), &env(&with_keys)).unwrap();
        assert_eq!(key.secret.expose_secret(), KEY);
        assert_eq!(key.source, KeySource::Caller("ops".into()));

        let tests = ConnectArgs {
            caller: Some("tests".into()),
            ..args()
        };
        let both = [
            (KEYS_VAR, keys.as_str()),
            (API_KEY_VAR, "api-key-0123456789abcdef"),
        ];
        let key = Key::resolve(&tests, &env(&both)).unwrap();
        assert_eq!(key.secret.expose_secret(), "tests-key-0123456789ab");
        let key = Key::resolve(&args(), &env(&both)).unwrap();
        assert_eq!(key.source, KeySource::ApiKeyVar);
        assert_eq!(key.secret.expose_secret(), "api-key-0123456789abcdef");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{KEY}\n")).unwrap();
        let from_file = ConnectArgs {
            key_file: Some(path.clone()),
            ..args()
        };
        let key = Key::resolve(&from_file, &env(&both)).unwrap();
        assert_eq!(key.secret.expose_secret(), KEY);
        assert_eq!(key.source, KeySource::File(path));
        assert!(!format!("{key:?}").contains(KEY), "{key:?}");

        // The service's own variables may be files (`<NAME>_FILE`); the tool reads them too.
        let keys_file = dir.path().join("client-keys");
        std::fs::write(&keys_file, format!("{keys}\n")).unwrap();
        let keys_file = keys_file.display().to_string();
        let key = Key::resolve(
            &args(),
            &env(&[("TOKEN_SERVICE_CLIENT_KEYS_FILE", &keys_file)]),
        )
        .unwrap();
        assert_eq!(key.secret.expose_secret(), KEY);
        let api_file = dir.path().join("api-key");
        std::fs::write(&api_file, "api-key-0123456789abcdef\n").unwrap();
        let api_file = api_file.display().to_string();
        let key =
            Key::resolve(&args(), &env(&[("TOKEN_SERVICE_API_KEY_FILE", &api_file)])).unwrap();
        assert_eq!(key.source, KeySource::ApiKeyVar);
        assert_eq!(key.secret.expose_secret(), "api-key-0123456789abcdef");
    }

    #[test]
    fn no_key_says_what_to_do_and_no_error_repeats_a_key() {
        let err = Key::resolve(&args(), &env(&[])).unwrap_err();
        assert!(matches!(err, OpsError::Usage(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "no key: pass --key-file, set TOKEN_SERVICE_API_KEY, or give caller `ops` a key in TOKEN_SERVICE_CLIENT_KEYS"
        );
        let others = format!("auth-service={KEY}");
        let err = Key::resolve(&args(), &env(&[(KEYS_VAR, &others)])).unwrap_err();
        assert!(err.to_string().contains("caller `ops`"), "{err}");
        assert!(!err.to_string().contains(KEY), "{err}");

        let weak = "ops=short-key";
        let err = Key::resolve(&args(), &env(&[(KEYS_VAR, weak)])).unwrap_err();
        assert!(err.to_string().contains(KEYS_VAR), "{err}");
        assert!(!err.to_string().contains("short-key"), "{err}");

        let demo = "ops=demo-ops-to-token-key-not-secret";
        let err = Key::resolve(&args(), &env(&[(KEYS_VAR, demo)])).unwrap_err();
        assert!(err.to_string().contains("DEMO_MODE"), "{err}");
        assert!(!err.to_string().contains("demo-ops"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "a key with spaces in it").unwrap();
        let from_file = ConnectArgs {
            key_file: Some(path),
            ..args()
        };
        let err = Key::resolve(&from_file, &env(&[])).unwrap_err();
        assert!(err.to_string().contains("printable ASCII"), "{err}");
        assert!(!err.to_string().contains("spaces in it"), "{err}");
    }
}
