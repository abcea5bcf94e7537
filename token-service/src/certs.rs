//! `token-service certs`: a private CA and one server certificate per internal service, made in a
//! folder and renewed there, so that compose's real mode runs TLS on every internal hop with no
//! manual step and no openssl in the image (rcgen, on the aws-lc-rs provider the TLS stack already
//! builds).
//!
//! Idempotent, so it runs at every start: what is still good is kept, byte for byte; a
//! certificate is made again when it is missing, unreadable, does not match its key, was not
//! issued by the current CA for its names, or expires within [`RENEW_WITHIN`]. The CA is kept
//! until it could no longer outlive a new certificate by [`RENEW_WITHIN`]; a new CA means new
//! certificates for every name. Each name gets a folder of its own (`DIR/NAME/`: its certificate,
//! key and the CA's certificate), so each service can be given its own key and nobody else's;
//! `DIR/ca.pem` alone is for callers. Service keys are written `0640` by the user running this (the
//! services' user in compose), and every file is replaced by a rename, so a reader never sees half
//! of one.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use anyhow::{Context as _, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _,
};
use rustls::{
    client::{WebPkiServerVerifier, danger::ServerCertVerifier as _},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject as _},
};
use time::{Duration, OffsetDateTime};

/// How long a new CA is valid.
pub const CA_LIFETIME: Duration = Duration::days(3650);
/// How long a new service certificate is valid.
pub const LEAF_LIFETIME: Duration = Duration::days(365);
/// A certificate that expires within this is made again.
pub const RENEW_WITHIN: Duration = Duration::days(30);
/// Every service certificate also names this host: a container's own healthcheck reaches its
/// server there (token-service's checks `https://localhost:PORT` against the CA).
const LOCAL_NAME: &str = "localhost";
/// The CA's files: its certificate (also copied next to the services' files, for their callers)
/// and its key.
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
/// A service key's mode: its owner and group (the services' uid and gid, 10001 in the image) read
/// it, so a server of another user (Redis, uid 999) reads it through that group
/// (`group_add` in compose); nobody else does.
const SERVICE_KEY_MODE: u32 = 0o640;
/// A name's certificate and key, in its folder `DIR/NAME/`.
pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";

/// `token-service certs`.
#[derive(Debug, clap::Args)]
pub struct CertsArgs {
    /// Where the services' files go: ca.pem (the CA their callers trust), and for each name a
    /// folder NAME/ with cert.pem, key.pem (mode 0640: its group lets a server running as another
    /// user, such as Redis, read it; each folder is mounted into its own service only) and ca.pem.
    #[arg(long)]
    pub dir: PathBuf,
    /// Where the CA's own key stays (ca.key, mode 0600, next to ca.pem): a folder the services
    /// do not mount, so none of them can issue certificates. Required, and outside --dir.
    #[arg(long)]
    pub ca_dir: PathBuf,
    /// The services' host names, comma-separated (e.g. token-service,projects-service): each
    /// one's certificate names it and `localhost`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub names: Vec<String>,
}

/// A host name a certificate is made for: lower-case letters, digits, `-` and `.` (no leading or
/// trailing `.`/`-`, no empty label), so it is both a DNS name and a safe file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostName(String);

impl HostName {
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let name = raw.trim();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            bail!("--names: {name:?} is not a host name (lower-case letters, digits, `-` and `.`)");
        }
        Ok(HostName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a run did with one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Still good: left as it was.
    Kept,
    /// Made (again), and why.
    Made(String),
}

/// What a run did: with the CA, and with each name's certificate.
#[derive(Debug)]
pub struct Report {
    pub ca: Outcome,
    pub leaves: Vec<(HostName, Outcome)>,
}

/// The command: runs at the current time and says what it did, one line each, on stderr.
pub fn main(args: &CertsArgs) -> ExitCode {
    match run(args, OffsetDateTime::now_utc()) {
        Ok(report) => {
            let say = |what: &str, outcome: &Outcome| match outcome {
                Outcome::Kept => eprintln!("certs: {what}: kept"),
                Outcome::Made(why) => eprintln!("certs: {what}: made ({why})"),
            };
            say("CA", &report.ca);
            for (name, outcome) in &report.leaves {
                say(name.as_str(), outcome);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("token-service certs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Makes or renews, as of `now`, the CA in `--ca-dir` and each name's certificate in `--dir`.
pub fn run(args: &CertsArgs, now: OffsetDateTime) -> anyhow::Result<Report> {
    let mut names: Vec<HostName> = Vec::new();
    for raw in &args.names {
        let name = HostName::parse(raw)?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        bail!("--names: at least one host name");
    }
    let dir = &args.dir;
    let ca_dir = &args.ca_dir;
    for d in [dir, ca_dir] {
        fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let canonical =
        |d: &Path| fs::canonicalize(d).with_context(|| format!("cannot resolve {}", d.display()));
    if canonical(ca_dir)?.starts_with(canonical(dir)?) {
        bail!(
            "--ca-dir must be outside --dir: whoever is given a folder of --dir (a service, its callers) must never find the CA's key there"
        );
    }

    let (ca, ca_outcome) = match Ca::load(ca_dir, now)? {
        Ok(ca) => (ca, Outcome::Kept),
        Err(why) => {
            let ca = Ca::make(now)?;
            write(&ca_dir.join(CA_KEY), ca.key_pem.as_bytes(), 0o600)?;
            write(&ca_dir.join(CA_CERT), ca.cert_pem.as_bytes(), 0o644)?;
            (ca, Outcome::Made(why))
        }
    };
    ca.copy_to(dir)?;

    let mut leaves = Vec::with_capacity(names.len());
    for name in names {
        let own = dir.join(name.as_str());
        fs::create_dir_all(&own).with_context(|| format!("cannot create {}", own.display()))?;
        ca.copy_to(&own)?;
        let cert_path = own.join(CERT_FILE);
        let key_path = own.join(KEY_FILE);
        let outcome = match ca.check(&name, read(&cert_path)?, read(&key_path)?, now) {
            Ok(()) => Outcome::Kept,
            Err(why) => {
                let (cert_pem, key_pem) = ca.issue(&name, now)?;
                // Key first: a crash in between leaves a pair that does not match, which the
                // next run makes again.
                write(&key_path, key_pem.as_bytes(), SERVICE_KEY_MODE)?;
                write(&cert_path, cert_pem.as_bytes(), 0o644)?;
                Outcome::Made(why)
            }
        };
        leaves.push((name, outcome));
    }
    Ok(Report {
        ca: ca_outcome,
        leaves,
    })
}

/// The CA: its certificate (PEM and DER) and what signs with its key.
struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Its certificate as `dir/ca.pem`, for those who trust it; rewritten only when it differs
    /// (a kept CA leaves the file untouched).
    fn copy_to(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(CA_CERT);
        if read(&path)?.as_deref() != Some(self.cert_pem.as_bytes()) {
            write(&path, self.cert_pem.as_bytes(), 0o644)?;
        }
        Ok(())
    }

    /// The CA in `dir`, or why a new one is needed (none yet, unreadable, not matching its key,
    /// or too close to its expiry to outlive a new certificate).
    fn load(dir: &Path, now: OffsetDateTime) -> anyhow::Result<Result<Ca, String>> {
        let (Some(cert), Some(key)) = (read(&dir.join(CA_CERT))?, read(&dir.join(CA_KEY))?) else {
            return Ok(Err("none yet".into()));
        };
        let Some((cert_der, key_pair)) = parse_pair(&cert, &key) else {
            return Ok(Err(
                "the files could not be read as a certificate and its key".into(),
            ));
        };
        let Ok((_, x509)) = x509_parser::parse_x509_certificate(&cert_der) else {
            return Ok(Err("unreadable certificate".into()));
        };
        if !x509.is_ca() {
            return Ok(Err("not a CA certificate".into()));
        }
        let not_after = x509.validity().not_after.timestamp();
        if not_after < (now + LEAF_LIFETIME + RENEW_WITHIN).unix_timestamp() {
            return Ok(Err(format!(
                "expires at {}, too soon to sign a certificate for {} days",
                x509.validity().not_after,
                LEAF_LIFETIME.whole_days()
            )));
        }
        let Ok(issuer) = Issuer::from_ca_cert_der(&cert_der, key_pair) else {
            return Ok(Err("unusable as an issuer".into()));
        };
        let (Ok(cert_pem), Ok(key_pem)) = (String::from_utf8(cert), String::from_utf8(key)) else {
            return Ok(Err("not PEM text".into()));
        };
        Ok(Ok(Ca {
            cert_pem,
            cert_der,
            key_pem,
            issuer,
        }))
    }

    /// A new self-signed CA, valid from an hour ago (clock skew) for [`CA_LIFETIME`], that may
    /// sign server certificates only (path length 0).
    fn make(now: OffsetDateTime) -> anyhow::Result<Ca> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let key_pem = key.serialize_pem();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "snykapps internal CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - Duration::hours(1);
        params.not_after = now + CA_LIFETIME;
        let certified = CertifiedIssuer::self_signed(params, key).context("cannot make the CA")?;
        let cert_pem = certified.pem();
        let cert_der = certified.der().clone();
        // The issuer as a later run reads it back from the files, so both sign alike.
        let key = KeyPair::from_pem(&key_pem)?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(Ca {
            cert_pem,
            cert_der,
            key_pem,
            issuer,
        })
    }

    /// Is this pair still good for `name`: the key matches the certificate, which this CA issued
    /// for `name` and `localhost`, and which is still valid [`RENEW_WITHIN`] from `now`? If not,
    /// why not.
    fn check(
        &self,
        name: &HostName,
        cert: Option<Vec<u8>>,
        key: Option<Vec<u8>>,
        now: OffsetDateTime,
    ) -> Result<(), String> {
        let (Some(cert), Some(key)) = (cert, key) else {
            return Err("none yet".into());
        };
        let Some((cert_der, _)) = parse_pair(&cert, &key) else {
            return Err("the certificate and key do not match or cannot be read".into());
        };
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.cert_der.clone())
            .map_err(|e| format!("the CA is unusable as a root: {e}"))?;
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            service_runtime::tls::provider(),
        )
        .build()
        .map_err(|e| format!("cannot check it: {e}"))?;
        let then = now + RENEW_WITHIN;
        let then = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(then.unix_timestamp()).unwrap_or_default(),
        ));
        for host in [name.as_str(), LOCAL_NAME] {
            let server = ServerName::try_from(host.to_owned())
                .map_err(|e| format!("{host} is not a server name: {e}"))?;
            verifier
                .verify_server_cert(&cert_der, &[], &server, &[], then)
                .map_err(|e| {
                    format!(
                        "not valid for {host} in {} days: {e}",
                        RENEW_WITHIN.whole_days()
                    )
                })?;
        }
        Ok(())
    }

    /// A new key and a certificate for `name` and `localhost`, valid from an hour ago for
    /// [`LEAF_LIFETIME`], for TLS servers only. PEM: (certificate, key).
    fn issue(&self, name: &HostName, now: OffsetDateTime) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(vec![name.as_str().to_owned(), LOCAL_NAME.into()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, name.as_str());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - Duration::hours(1);
        params.not_after = now + LEAF_LIFETIME;
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("cannot issue a certificate for {}", name.as_str()))?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// The first certificate of `cert` and the key of `key`, when both are readable PEM and the key
/// is the certificate's.
fn parse_pair(cert: &[u8], key: &[u8]) -> Option<(CertificateDer<'static>, KeyPair)> {
    let der = CertificateDer::pem_slice_iter(cert).next()?.ok()?;
    let key_pair = KeyPair::from_pem(std::str::from_utf8(key).ok()?).ok()?;
    let (_, x509) = x509_parser::parse_x509_certificate(&der).ok()?;
    (x509.public_key().raw == key_pair.subject_public_key_info().as_slice())
        .then_some((der, key_pair))
}

/// The contents of `path`, or `None` when there is no such file.
fn read(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Replaces `path` with `contents` and `mode`: written to a temporary file beside it (created
/// with that mode, so a key is never readable by others, not even for a moment), then renamed.
fn write(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    // The umask may have taken bits away from a certificate's 0644; set exactly `mode`.
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn args(dir: &Path, names: &[&str]) -> CertsArgs {
        CertsArgs {
            dir: dir.join("tls"),
            ca_dir: dir.join("ca"),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn outcomes(report: &Report) -> Vec<(&str, bool)> {
        std::iter::once(("CA", report.ca == Outcome::Kept))
            .chain(
                report
                    .leaves
                    .iter()
                    .map(|(n, o)| (n.as_str(), *o == Outcome::Kept)),
            )
            .collect()
    }

    /// A rustls client trusting `ca.pem` of `dir` accepts `name`'s certificate for `host` at
    /// `at` (the way the services' callers check it).
    fn accepted(dir: &Path, name: &str, host: &str, at: OffsetDateTime) -> Result<(), String> {
        let ca = fs::read(dir.join("ca.pem")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca) {
            roots.add(c.unwrap()).unwrap();
        }
        let cert = fs::read(dir.join(name).join(CERT_FILE)).unwrap();
        let leaf = CertificateDer::pem_slice_iter(&cert)
            .next()
            .unwrap()
            .unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            service_runtime::tls::provider(),
        )
        .build()
        .unwrap();
        let at =
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(at.unix_timestamp() as u64));
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &ServerName::try_from(host.to_owned()).unwrap(),
                &[],
                at,
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn mode(path: PathBuf) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_first_run_issues_a_ca_and_a_certificate_per_name_with_its_names() {
        let tmp = tempfile::tempdir().unwrap();
        let a = args(tmp.path(), &["token-service", "projects-service"]);
        let report = run(&a, t0()).unwrap();
        assert_eq!(
            outcomes(&report),
            [
                ("CA", false),
                ("token-service", false),
                ("projects-service", false)
            ]
        );
        for name in ["token-service", "projects-service"] {
            for host in [name, "localhost"] {
                accepted(&a.dir, name, host, t0()).unwrap();
            }
            let other = if name == "token-service" {
                "projects-service"
            } else {
                "token-service"
            };
            let err = accepted(&a.dir, name, other, t0()).unwrap_err();
            assert!(
                err.contains("not valid for name"),
                "{name} for {other}: {err}"
            );
            assert_eq!(mode(a.dir.join(name).join(KEY_FILE)), SERVICE_KEY_MODE);
            assert_eq!(mode(a.dir.join(name).join(CERT_FILE)), 0o644);
            // Its folder holds its own key and the CA's certificate, nobody else's key.
            let mut files: Vec<String> = fs::read_dir(a.dir.join(name))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            files.sort();
            assert_eq!(files, ["ca.pem", "cert.pem", "key.pem"]);
            // The key is a usable PEM key for the services (rustls reads it as they do).
            service_runtime::tls::private_key(
                "K",
                "k",
                &fs::read(a.dir.join(name).join(KEY_FILE)).unwrap(),
            )
            .unwrap();
        }
        // The CA's key stays in its own folder; the services' folder holds its certificate only.
        assert_eq!(mode(tmp.path().join("ca/ca.key")), 0o600);
        assert!(!a.dir.join("ca.key").exists());
        for copy in ["ca.pem", "token-service/ca.pem"] {
            assert_eq!(
                fs::read(a.dir.join(copy)).unwrap(),
                fs::read(tmp.path().join("ca/ca.pem")).unwrap()
            );
        }
        // A certificate is for a server, not a CA: it cannot vouch for anything else.
        let leaf = fs::read(a.dir.join("token-service").join(CERT_FILE)).unwrap();
        let der = CertificateDer::pem_slice_iter(&leaf)
            .next()
            .unwrap()
            .unwrap();
        let (_, x509) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!x509.is_ca());
        assert_eq!(
            x509.validity().not_after.timestamp(),
            (t0() + LEAF_LIFETIME).unix_timestamp()
        );
    }

    #[test]
    fn a_second_run_keeps_what_is_valid_and_renews_what_expires_soon() {
        let tmp = tempfile::tempdir().unwrap();
        let a = args(tmp.path(), &["token-service", "projects-service"]);
        run(&a, t0()).unwrap();
        let snapshot = |name: &str| fs::read(a.dir.join(name)).unwrap();
        let before = (
            snapshot("ca.pem"),
            snapshot("token-service/cert.pem"),
            snapshot("token-service/key.pem"),
        );

        // A month later: everything kept, byte for byte.
        let report = run(&a, t0() + Duration::days(30)).unwrap();
        assert!(
            outcomes(&report).iter().all(|(_, kept)| *kept),
            "{report:?}"
        );
        assert_eq!(
            before,
            (
                snapshot("ca.pem"),
                snapshot("token-service/cert.pem"),
                snapshot("token-service/key.pem")
            )
        );

        // 29 days before the certificates expire: both renewed, under the same CA.
        let late = t0() + LEAF_LIFETIME - RENEW_WITHIN + Duration::days(1);
        let report = run(&a, late).unwrap();
        assert_eq!(
            outcomes(&report),
            [
                ("CA", true),
                ("token-service", false),
                ("projects-service", false)
            ]
        );
        assert!(
            matches!(&report.leaves[0].1, Outcome::Made(why) if why.contains("valid")),
            "{report:?}"
        );
        assert_eq!(before.0, snapshot("ca.pem"), "the CA is kept");
        assert_ne!(before.1, snapshot("token-service/cert.pem"));
        assert_ne!(before.2, snapshot("token-service/key.pem"), "a new key too");
        accepted(
            &a.dir,
            "token-service",
            "token-service",
            late + LEAF_LIFETIME - Duration::days(1),
        )
        .unwrap();
    }

    #[test]
    fn a_ca_near_its_expiry_is_replaced_and_every_certificate_with_it() {
        let tmp = tempfile::tempdir().unwrap();
        let a = args(tmp.path(), &["token-service"]);
        run(&a, t0()).unwrap();
        let old_ca = fs::read(a.dir.join("ca.pem")).unwrap();
        // Less than a certificate's lifetime (plus the margin) left on the CA.
        let late = t0() + CA_LIFETIME - LEAF_LIFETIME;
        let report = run(&a, late).unwrap();
        assert_eq!(outcomes(&report), [("CA", false), ("token-service", false)]);
        assert_ne!(old_ca, fs::read(a.dir.join("ca.pem")).unwrap());
        accepted(&a.dir, "token-service", "token-service", late).unwrap();
    }

    #[test]
    fn a_broken_or_foreign_pair_is_made_again_and_a_new_name_gets_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let a = args(tmp.path(), &["token-service", "projects-service"]);
        run(&a, t0()).unwrap();
        // projects-service's key swapped for token-service's: they no longer match.
        fs::copy(
            a.dir.join("token-service").join(KEY_FILE),
            a.dir.join("projects-service").join(KEY_FILE),
        )
        .unwrap();
        let b = args(
            tmp.path(),
            &["token-service", "projects-service", "auth-service"],
        );
        let report = run(&b, t0()).unwrap();
        assert_eq!(
            outcomes(&report),
            [
                ("CA", true),
                ("token-service", true),
                ("projects-service", false),
                ("auth-service", false)
            ]
        );
        accepted(&a.dir, "projects-service", "projects-service", t0()).unwrap();

        // A certificate from another CA (a second folder's, with the same name: its signature
        // does not check out) is not kept.
        let other = tempfile::tempdir().unwrap();
        let o = args(other.path(), &["token-service"]);
        run(&o, t0()).unwrap();
        for f in [CERT_FILE, KEY_FILE] {
            fs::copy(
                o.dir.join("token-service").join(f),
                a.dir.join("token-service").join(f),
            )
            .unwrap();
        }
        let report = run(&a, t0()).unwrap();
        assert!(
            matches!(&report.leaves[0].1, Outcome::Made(why) if why.contains("BadSignature")),
            "{report:?}"
        );
        accepted(&a.dir, "token-service", "token-service", t0()).unwrap();
    }

    #[test]
    fn names_must_be_host_names() {
        for bad in ["", "Token", "a/b", "../x", "-a", "a..b", "a b", "a.", "*.x"] {
            let tmp = tempfile::tempdir().unwrap();
            let err = run(&args(tmp.path(), &["ok", bad]), t0()).unwrap_err();
            assert!(err.to_string().contains("--names"), "{bad:?}: {err}");
        }
        assert_eq!(HostName::parse(" svc-1.ns ").unwrap().as_str(), "svc-1.ns");
    }

    #[test]
    fn the_cas_key_never_goes_where_the_services_files_go() {
        let tmp = tempfile::tempdir().unwrap();
        for ca_dir in [tmp.path().join("tls"), tmp.path().join("tls/ca")] {
            let a = CertsArgs {
                ca_dir,
                ..args(tmp.path(), &["svc"])
            };
            let err = run(&a, t0()).unwrap_err().to_string();
            assert!(err.contains("--ca-dir must be outside --dir"), "{err}");
        }
        assert!(!tmp.path().join("tls/ca.key").exists());
        assert!(!tmp.path().join("tls/ca/ca.key").exists());
    }
}
