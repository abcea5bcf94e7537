//! Reading settings from the environment the same way in every service: each error names the
//! variable, secrets are refused when empty, still the `.env.example` placeholder, or (outside
//! demo mode) a demo value published in docker-compose.yml; Snyk URLs must be https outside demo
//! mode and a fake Snyk's in demo mode (the rules live in [`crate::demo`]). Every secret may
//! also come from a file: `<NAME>_FILE` names it (the convention of Docker and Kubernetes
//! secrets, which are files), and a secret given both ways is refused.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

use anyhow::{Context, bail};
use secrecy::SecretString;
use url::Url;

use crate::{demo, tls::ExtraRoots};

/// The placeholder `.env.example` puts where a real value must go.
pub const PLACEHOLDER: &str = "REPLACE-ME";

/// `<NAME>_FILE` names a file that holds the secret `<NAME>` ([`Env::required`]).
pub const FILE_SUFFIX: &str = "_FILE";

/// Where values come from: the process environment, or a test's map.
type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// A view of the environment with typed, validated readers.
pub struct Env<'a> {
    get: Lookup<'a>,
}

impl fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Env")
    }
}

impl<'a> Env<'a> {
    pub fn new(get: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Env { get: Box::new(get) }
    }

    /// The process environment.
    pub fn process() -> Env<'static> {
        Env::new(|k| std::env::var(k).ok())
    }

    /// The value, or `default` when unset.
    pub fn var(&self, k: &str, default: &str) -> String {
        (self.get)(k).unwrap_or_else(|| default.to_owned())
    }

    /// The trimmed value when set and not blank.
    pub fn optional(&self, k: &str) -> Option<String> {
        (self.get)(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// `DEMO_MODE`: off when unset; an error naming it when neither a yes nor a no.
    pub fn demo_mode(&self) -> anyhow::Result<bool> {
        demo::parse((self.get)(demo::DEMO_MODE).as_deref())
    }

    /// A value that must be set, not to the `.env.example` placeholder, and not (unless
    /// `DEMO_MODE=true`) to a demo value docker-compose.yml publishes. It may instead be the
    /// contents of the file named by `<k>_FILE` (trailing newlines dropped), checked the same
    /// way; both set is refused, so an old value cannot silently win over a mounted secret.
    pub fn required(&self, k: &str) -> anyhow::Result<String> {
        let (v, from) = match self.secret_source(k)? {
            Some((v, from)) => (v, from),
            None => bail!("{k} must be set (or {k}{FILE_SUFFIX}, naming a file that holds it)"),
        };
        if v.contains(PLACEHOLDER) {
            bail!("{from} still holds the {PLACEHOLDER} placeholder from .env.example");
        }
        // An unreadable DEMO_MODE counts as off here; `snyk_url` names it.
        if demo::is_shipped(&v) && !self.demo_mode().unwrap_or(false) {
            bail!(
                "{from} holds a demo value published in docker-compose.yml, refused unless {}=true; set your own (see .env.example)",
                demo::DEMO_MODE
            );
        }
        match v.trim() {
            "" => bail!("{from} must not be empty"),
            v => Ok(v.to_owned()),
        }
    }

    /// Whether the secret `k` is given at all, as a value or through `<k>_FILE` (blank counts as
    /// unset): for settings that are optional as a whole but, once given, read by `required`.
    pub fn secret_is_set(&self, k: &str) -> bool {
        self.optional(k).is_some() || self.optional(&format!("{k}{FILE_SUFFIX}")).is_some()
    }

    /// The raw secret `k` and where it came from (`k`, or `<k>_FILE (path)`, for messages), from
    /// the variable or from the file `<k>_FILE` names. `None` when neither is set; a blank
    /// variable counts as unset, as compose passes `${VAR:-}` through empty.
    fn secret_source(&self, k: &str) -> anyhow::Result<Option<(String, String)>> {
        let file_var = format!("{k}{FILE_SUFFIX}");
        let direct = (self.get)(k).filter(|v| !v.trim().is_empty());
        let Some(path) = self.optional(&file_var) else {
            return Ok(direct.map(|v| (v, k.to_owned())));
        };
        if direct.is_some() {
            bail!("{k} and {file_var} are both set: give the secret one way only");
        }
        // The I/O error says why (missing, permissions), never what the file holds.
        let bytes = std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("{file_var}: cannot read {path}: {e}"))?;
        let Ok(text) = String::from_utf8(bytes) else {
            bail!("{file_var}: {path} is not UTF-8 text");
        };
        // `echo secret > file` and editors end a file with a newline that is no part of it:
        // `required` trims it, as it trims a value.
        Ok(Some((text, format!("{file_var} ({path})"))))
    }

    /// A required key that will travel in an `authorization` header ([`header_safe`]).
    pub fn header_secret(&self, k: &str) -> anyhow::Result<SecretString> {
        let v = self.required(k)?;
        if !header_safe(&v) {
            bail!("{k} must be printable ASCII without spaces");
        }
        Ok(v.into())
    }

    /// An absolute http(s) URL without a fragment or credentials ([`parse_http_url`]).
    pub fn http_url(&self, k: &str, default: &str) -> anyhow::Result<Url> {
        parse_http_url(k, &self.var(k, default))
    }

    /// The URL of a Snyk host (`SNYK_API_URL`, `SNYK_APP_URL`). Outside demo mode it must be
    /// https unless the host is loopback (tests and local fakes); in demo mode it must be a fake
    /// Snyk: loopback or a host named in `DEMO_SNYK_HOSTS` ([`demo::DemoSnykHosts`]), so the
    /// published demo secrets never reach Snyk, Snyk for Government, or a proxy in front of them.
    pub fn snyk_url(&self, k: &str, default: &str) -> anyhow::Result<Url> {
        let u = self.secure_url(k, default)?;
        if self.demo_mode()? {
            let hosts = demo::DemoSnykHosts::parse(
                &self.var(demo::DEMO_SNYK_HOSTS, demo::DEFAULT_DEMO_SNYK_HOSTS),
            )?;
            if !hosts.admits(&u) {
                bail!(
                    "{}=true is refused with {k}={}: demo mode runs only against a fake Snyk on this machine or on a host named in {} (now {:?})",
                    demo::DEMO_MODE,
                    u.host_str().unwrap_or_default(),
                    demo::DEMO_SNYK_HOSTS,
                    hosts.to_string(),
                );
            }
        }
        Ok(u)
    }

    /// An http(s) URL that must be https outside demo mode, unless it is this machine (plain
    /// http there carries nothing over a network).
    pub fn secure_url(&self, k: &str, default: &str) -> anyhow::Result<Url> {
        let u = self.http_url(k, default)?;
        if !self.demo_mode()? && u.scheme() != "https" && !demo::is_loopback(&u) {
            bail!(
                "{k} must be an https URL (plain http only for 127.0.0.1, ::1 or localhost, or with {}=true)",
                demo::DEMO_MODE
            );
        }
        Ok(u)
    }

    /// `host:port`.
    pub fn addr(&self, k: &str, default: &str) -> anyhow::Result<SocketAddr> {
        self.var(k, default)
            .trim()
            .parse()
            .with_context(|| format!("{k} must be host:port, like {default}"))
    }

    /// A duration in whole milliseconds, greater than zero.
    pub fn millis(&self, k: &str, default: u64) -> anyhow::Result<Duration> {
        let d = self.millis_or_zero(k, default)?;
        if d.is_zero() {
            bail!("{k} must be greater than 0");
        }
        Ok(d)
    }

    /// A duration in whole milliseconds; zero allowed.
    pub fn millis_or_zero(&self, k: &str, default: u64) -> anyhow::Result<Duration> {
        let n: u64 = self.parse(k, default, "a whole number of milliseconds")?;
        Ok(Duration::from_millis(n))
    }

    /// The contents of the file named by `k`, when `k` is set.
    pub fn file(&self, k: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.named_file(k)?.map(|(_, contents)| contents))
    }

    /// The path in `k` and the contents of that file, when `k` is set.
    pub(crate) fn named_file(&self, k: &str) -> anyhow::Result<Option<(String, Vec<u8>)>> {
        match self.optional(k) {
            Some(path) => {
                let contents =
                    std::fs::read(&path).with_context(|| format!("{k}: cannot read {path}"))?;
                Ok(Some((path, contents)))
            }
            None => Ok(None),
        }
    }

    /// Root certificates from the PEM file named by `k` (such as
    /// [`SNYK_CA_CERT`](crate::tls::SNYK_CA_CERT)), trusted in addition to the platform's:
    /// none when unset; an error naming `k` when the file cannot be read or holds no usable
    /// certificate.
    pub fn extra_roots(&self, k: &str) -> anyhow::Result<ExtraRoots> {
        match self.named_file(k)? {
            Some((path, pem)) => ExtraRoots::from_pem(k, &path, &pem),
            None => Ok(ExtraRoots::default()),
        }
    }

    /// Any `FromStr` value; `what` describes the expected form in the error.
    pub fn parse<T: FromStr>(
        &self,
        k: &str,
        default: impl fmt::Display,
        what: &str,
    ) -> anyhow::Result<T> {
        self.var(k, &default.to_string())
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{k} must be {what}"))
    }
}

/// Can `key` travel in an `authorization` header as a caller key? Printable ASCII without spaces,
/// and not empty: the rule for every key a caller presents.
pub fn header_safe(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic())
}

/// `raw` as an absolute http(s) URL without a fragment and without a user name or password;
/// `what` (the variable, or which entry of it) names it in errors.
///
/// Credentials in a URL are refused rather than stripped: URLs are printed (`Debug` of settings,
/// logs naming a replica), and none of our upstreams takes them there (token-service has its key
/// in `TOKEN_SERVICE_API_KEY`). The error does not repeat the URL.
pub fn parse_http_url(what: &str, raw: &str) -> anyhow::Result<Url> {
    let u = Url::parse(raw.trim()).with_context(|| format!("{what} is not a valid URL"))?;
    if !matches!(u.scheme(), "http" | "https") {
        bail!("{what} must be an http(s) URL");
    }
    if !u.username().is_empty() || u.password().is_some() {
        bail!("{what} must not carry a user name or password (user:pass@)");
    }
    if u.fragment().is_some() {
        bail!("{what} must not have a fragment");
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use secrecy::ExposeSecret;

    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> Env<'static> {
        Env::new(move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn every_error_names_its_variable() {
        let e = env(&[
            ("A", "x y"),
            ("U", "ftp://h"),
            ("F", "http://h/#f"),
            ("M", "0"),
            ("N", "-3"),
            ("P", "REPLACE-ME"),
        ]);
        let errors = [
            e.required("MISSING").unwrap_err(),
            e.required("P").unwrap_err(),
            e.header_secret("A").unwrap_err(),
            e.http_url("U", "").unwrap_err(),
            e.http_url("F", "").unwrap_err(),
            e.addr("A", "0.0.0.0:1").unwrap_err(),
            e.millis("M", 5).unwrap_err(),
            e.millis("N", 5).unwrap_err(),
        ];
        for (err, var) in errors
            .iter()
            .zip(["MISSING", "P", "A", "U", "F", "A", "M", "N"])
        {
            assert!(err.to_string().contains(var), "{err}");
        }
        assert!(errors[1].to_string().contains("REPLACE-ME"));
    }

    #[test]
    fn extra_roots_are_optional_but_a_bad_file_stops_the_start() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let good = dir.join("cas.pem");
        std::fs::write(&good, include_bytes!("../testdata/two-cas.pem")).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let missing = dir.join("missing.pem");
        let (good, empty, missing) = (
            good.display().to_string(),
            empty.display().to_string(),
            missing.display().to_string(),
        );
        let e = Env::new(|k| match k {
            "GOOD" => Some(good.clone()),
            "EMPTY" => Some(empty.clone()),
            "MISSING" => Some(missing.clone()),
            "BLANK" => Some("  ".into()),
            _ => None,
        });
        assert_eq!(e.extra_roots("GOOD").unwrap().len(), 2);
        assert!(e.extra_roots("UNSET").unwrap().is_empty());
        assert!(e.extra_roots("BLANK").unwrap().is_empty());
        for (k, path, why) in [
            ("EMPTY", &empty, "holds no certificate"),
            ("MISSING", &missing, "cannot read"),
        ] {
            let err = format!("{:#}", e.extra_roots(k).unwrap_err());
            assert!(
                err.contains(k) && err.contains(path.as_str()) && err.contains(why),
                "{err}"
            );
        }
    }

    #[test]
    fn a_url_with_a_user_or_password_is_refused_without_repeating_them() {
        for raw in [
            "https://user:s3cret@api.snyk.io",
            "https://s3cret@api.snyk.io",
            "http://:s3cret@127.0.0.1:1",
        ] {
            let err = format!("{:#}", parse_http_url("X", raw).unwrap_err());
            assert_eq!(err, "X must not carry a user name or password (user:pass@)");
        }
    }

    #[test]
    fn defaults_and_values() {
        let e = env(&[("S", "  v  "), ("B", "   ")]);
        assert_eq!(e.required("S").unwrap(), "v");
        assert_eq!(e.optional("B"), None);
        assert_eq!(e.var("X", "d"), "d");
        assert_eq!(e.millis("X", 250).unwrap(), Duration::from_millis(250));
        assert_eq!(e.millis_or_zero("X", 0).unwrap(), Duration::ZERO);
        assert_eq!(e.addr("X", "127.0.0.1:8080").unwrap().port(), 8080);
        assert_eq!(
            e.http_url("X", "https://api.snyk.io").unwrap().as_str(),
            "https://api.snyk.io/"
        );
    }

    #[test]
    fn demo_values_are_refused_outside_demo_mode() {
        for demo_mode in [None, Some("false"), Some("nonsense")] {
            let e = Env::new(move |k| match k {
                "MY_SECRET" => {
                    Some("projects-service=demo-projects-to-token-key-not-secret".into())
                }
                "DEMO_MODE" => demo_mode.map(str::to_owned),
                _ => None,
            });
            let err = e.required("MY_SECRET").unwrap_err().to_string();
            assert!(
                err.contains("MY_SECRET") && err.contains("DEMO_MODE"),
                "{err}"
            );
            assert!(!err.contains("demo-projects"), "{err}");
        }
        let e = env(&[
            ("DEMO_MODE", "true"),
            ("S", "demo:ZGVtby1vbmx5LXRva2VuLWtleS1OT1QtQS1TRUNSRVQ="),
        ]);
        assert!(e.required("S").is_ok());
        assert!(e.header_secret("S").is_ok());
    }

    /// A test's secret files, and an `Env` over `vars` where `@name` stands for the path of
    /// the file `name` (written with `contents`).
    fn with_files(
        files: &[(&str, &str)],
        vars: &'static [(&'static str, &'static str)],
    ) -> (tempfile::TempDir, Env<'static>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).unwrap();
        }
        let root = dir.path().to_owned();
        let e = Env::new(move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| match v.strip_prefix('@') {
                    Some(name) => root.join(name).display().to_string(),
                    None => (*v).to_owned(),
                })
        });
        (dir, e)
    }

    #[test]
    fn a_secret_may_come_from_the_file_its_file_variable_names() {
        let (_dir, e) = with_files(
            &[
                ("s", "from-a-file\n"),
                ("crlf", "windows-file\r\n\r\n"),
                ("key", "ops=aaaaaaaaaaaaaaaa1\n"),
            ],
            &[
                ("S_FILE", "@s"),
                ("CRLF_FILE", "@crlf"),
                ("KEY_FILE", "@key"),
                // Blank counts as unset: compose passes `${VAR:-}` through empty.
                ("BLANK", "  "),
                ("BLANK_FILE", "@s"),
                ("PLAIN", "plain-value"),
            ],
        );
        assert_eq!(e.required("S").unwrap(), "from-a-file");
        assert_eq!(e.required("CRLF").unwrap(), "windows-file");
        assert_eq!(e.required("BLANK").unwrap(), "from-a-file");
        assert_eq!(e.required("PLAIN").unwrap(), "plain-value");
        assert_eq!(
            e.header_secret("KEY").unwrap().expose_secret(),
            "ops=aaaaaaaaaaaaaaaa1"
        );
        assert!(e.secret_is_set("S") && e.secret_is_set("PLAIN") && e.secret_is_set("BLANK"));
        assert!(!e.secret_is_set("UNSET"));
    }

    #[test]
    fn a_secret_given_both_ways_or_in_an_unreadable_file_is_refused_naming_the_variables() {
        let (dir, e) = with_files(
            &[("s", "file-secret-value\n"), ("latin1", "")],
            &[
                ("BOTH", "env-secret-value"),
                ("BOTH_FILE", "@s"),
                ("GONE_FILE", "@missing"),
                ("DIR_FILE", "@"),
            ],
        );
        let err = format!("{:#}", e.required("BOTH").unwrap_err());
        assert!(err.contains("BOTH and BOTH_FILE are both set"), "{err}");
        assert!(
            !err.contains("env-secret-value") && !err.contains("file-secret-value"),
            "{err}"
        );
        let missing = dir.path().join("missing").display().to_string();
        let err = format!("{:#}", e.required("GONE").unwrap_err());
        assert!(
            err.contains("GONE_FILE") && err.contains(&missing) && err.contains("cannot read"),
            "{err}"
        );
        let err = format!("{:#}", e.required("DIR").unwrap_err());
        assert!(
            err.contains("DIR_FILE") && err.contains("cannot read"),
            "{err}"
        );
        // Not UTF-8: named, not shown.
        std::fs::write(dir.path().join("latin1"), b"caf\xe9").unwrap();
        let e =
            Env::new(|k| (k == "L_FILE").then(|| dir.path().join("latin1").display().to_string()));
        let err = format!("{:#}", e.required("L").unwrap_err());
        assert!(err.contains("L_FILE") && err.contains("not UTF-8"), "{err}");
    }

    #[test]
    fn a_secret_file_is_checked_like_a_value() {
        let (_dir, e) = with_files(
            &[
                ("placeholder", "REPLACE-ME\n"),
                (
                    "demo",
                    "projects-service=demo-projects-to-token-key-not-secret\n",
                ),
                ("empty", "\n"),
                ("spaced", "has space"),
            ],
            &[
                ("P_FILE", "@placeholder"),
                ("D_FILE", "@demo"),
                ("E_FILE", "@empty"),
                ("H_FILE", "@spaced"),
            ],
        );
        let err = e.required("P").unwrap_err().to_string();
        assert!(
            err.contains("P_FILE") && err.contains("REPLACE-ME"),
            "{err}"
        );
        let err = e.required("D").unwrap_err().to_string();
        assert!(err.contains("D_FILE") && err.contains("DEMO_MODE"), "{err}");
        assert!(!err.contains("demo-projects"), "{err}");
        let err = e.required("E").unwrap_err().to_string();
        assert!(
            err.contains("E_FILE") && err.contains("must not be empty"),
            "{err}"
        );
        let err = e.header_secret("H").unwrap_err().to_string();
        assert!(
            err.contains('H') && err.contains("printable ASCII"),
            "{err}"
        );
    }

    #[test]
    fn snyk_urls_are_https_outside_demo_and_a_fake_in_demo() {
        let real = env(&[
            ("PLAIN", "http://api.example"),
            ("FAKE", "http://fake-snyk:8090"),
            ("LOCAL", "http://127.0.0.1:8090"),
            ("LOCAL6", "http://[::1]:8090"),
            ("LOCALHOST", "http://localhost:8090"),
            ("SNYK", "https://api.eu.snyk.io"),
            ("GOV", "https://api.snykgov.io"),
        ]);
        for k in ["PLAIN", "FAKE"] {
            let err = real.snyk_url(k, "").unwrap_err().to_string();
            assert!(err.contains(k) && err.contains("https"), "{err}");
        }
        for k in ["LOCAL", "LOCAL6", "LOCALHOST", "SNYK", "GOV"] {
            real.snyk_url(k, "").unwrap();
        }
        real.snyk_url("UNSET", "https://api.snyk.io").unwrap();

        let demo = env(&[
            ("DEMO_MODE", "true"),
            ("FAKE", "http://fake-snyk:8090"),
            ("LOCAL", "http://127.0.0.1:8090"),
            ("SNYK", "https://api.eu.snyk.io"),
            ("APEX", "http://snyk.io"),
            ("GOV", "https://api.snykgov.io"),
            ("PROXY", "https://snyk-proxy.corp.example"),
            ("STANDIN", "https://snyk-standin:8443"),
        ]);
        demo.snyk_url("FAKE", "").unwrap();
        demo.snyk_url("LOCAL", "").unwrap();
        for k in ["SNYK", "APEX", "GOV", "PROXY", "STANDIN"] {
            let err = demo.snyk_url(k, "").unwrap_err().to_string();
            assert!(
                err.contains(k) && err.contains("DEMO_MODE") && err.contains("DEMO_SNYK_HOSTS"),
                "{err}"
            );
        }
        // The default counts as much as a value: demo mode needs a Snyk URL set to the fake.
        let err = demo.snyk_url("UNSET", "https://api.snyk.io").unwrap_err();
        assert!(err.to_string().contains("UNSET"), "{err}");

        // DEMO_SNYK_HOSTS names the fakes instead of fake-snyk.
        let named = env(&[
            ("DEMO_MODE", "true"),
            ("DEMO_SNYK_HOSTS", "snyk-standin"),
            ("STANDIN", "https://snyk-standin:8443"),
            ("FAKE", "http://fake-snyk:8090"),
            ("LOCAL", "http://localhost:8090"),
        ]);
        named.snyk_url("STANDIN", "").unwrap();
        named.snyk_url("LOCAL", "").unwrap();
        let err = named.snyk_url("FAKE", "").unwrap_err().to_string();
        assert!(err.contains("\"snyk-standin\""), "{err}");
        let snyk = env(&[
            ("DEMO_MODE", "true"),
            ("DEMO_SNYK_HOSTS", "fake-snyk,api.snykgov.io"),
            ("GOV", "https://api.snykgov.io"),
        ]);
        let err = snyk.snyk_url("GOV", "").unwrap_err().to_string();
        assert!(err.contains("DEMO_SNYK_HOSTS"), "{err}");
        // Outside demo mode the list is not read.
        let real = env(&[
            ("DEMO_SNYK_HOSTS", "http://x"),
            ("GOV", "https://api.snykgov.io"),
        ]);
        real.snyk_url("GOV", "").unwrap();

        let typo = env(&[("DEMO_MODE", "ture"), ("LOCAL", "http://127.0.0.1:1")]);
        let err = typo.snyk_url("LOCAL", "").unwrap_err();
        assert!(err.to_string().contains("DEMO_MODE"), "{err}");
    }
}
