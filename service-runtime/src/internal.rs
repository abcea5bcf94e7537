//! Hops between our own services (`TOKEN_SERVICE_URL`, `PROJECTS_SERVICE_URL`), the same way for
//! every caller: outside demo mode they are encrypted unless an operator says something else
//! encrypts them ([`InternalHops`], `INTERNAL_PLAINTEXT=allow` for a service mesh), and over https
//! a caller trusts the CA named for that service ([`InternalCa`]: `TOKEN_SERVICE_CA_CERT`,
//! `PROJECTS_SERVICE_CA_CERT`).

use std::{fmt, sync::Arc};

use anyhow::bail;
use url::Url;

use crate::{config::Env, demo, tls::ExtraRoots};

/// The setting that lets plain `http://` reach another host outside demo mode: `allow`, for a
/// network that encrypts between services by itself (a service mesh with mutual TLS).
pub const INTERNAL_PLAINTEXT: &str = "INTERNAL_PLAINTEXT";

/// Why plain text is or is not acceptable on an internal hop to another host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `DEMO_MODE=true`: private compose networks with published demo keys; nothing to protect.
    Demo,
    /// The default: https, or http to this machine only.
    Encrypted,
    /// `INTERNAL_PLAINTEXT=allow`: the network encrypts; said at start-up.
    MeshEncrypts,
}

/// The rule for the URLs of our own services, and the plain-text hops it let through by the
/// operator's leave (said once at start-up by [`InternalHops::warn_plaintext`]).
///
/// ```
/// # use service_runtime::{config::Env, internal::InternalHops};
/// let env = Env::new(|_| None);
/// let mut hops = InternalHops::from_env(&env).unwrap();
/// let url = "http://token-service:50051".parse().unwrap();
/// let err = hops.check("TOKEN_SERVICE_URL", [&url]).unwrap_err().to_string();
/// assert!(err.contains("TOKEN_SERVICE_URL") && err.contains("INTERNAL_PLAINTEXT"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalHops {
    mode: Mode,
    /// (variable, host) of each plain-text hop to another host that `MeshEncrypts` let through.
    plaintext: Vec<(String, String)>,
}

impl InternalHops {
    /// `DEMO_MODE` and [`INTERNAL_PLAINTEXT`] (unset, blank or `allow`; anything else is an error
    /// naming it, so a typo never silently keeps or drops encryption).
    pub fn from_env(env: &Env) -> anyhow::Result<Self> {
        let allow = match env.optional(INTERNAL_PLAINTEXT) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("allow") => true,
            Some(_) => bail!(
                "{INTERNAL_PLAINTEXT} must be `allow` or unset (allow: plain http:// between services, for a network that encrypts it itself)"
            ),
        };
        let mode = if env.demo_mode()? {
            Mode::Demo
        } else if allow {
            Mode::MeshEncrypts
        } else {
            Mode::Encrypted
        };
        Ok(InternalHops {
            mode,
            plaintext: Vec::new(),
        })
    }

    /// Checks the URLs read from `var`: an `http://` URL to a host other than loopback is refused
    /// outside demo mode unless [`INTERNAL_PLAINTEXT`]`=allow`, which records it for the
    /// start-up warning. The error names `var` and `INTERNAL_PLAINTEXT`.
    pub fn check<'u>(
        &mut self,
        var: &str,
        urls: impl IntoIterator<Item = &'u Url>,
    ) -> anyhow::Result<()> {
        for url in urls {
            if url.scheme() == "https" || demo::is_loopback(url) {
                continue;
            }
            self.plain_hop(var, "http://", url.host_str().unwrap_or_default())?;
        }
        Ok(())
    }

    /// A plain-text hop of `scheme` (`http://`, `redis://`) from `var` to `host`, which is not
    /// this machine: refused outside demo mode unless [`INTERNAL_PLAINTEXT`]`=allow`, which
    /// records it for the start-up warning.
    pub fn plain_hop(&mut self, var: &str, scheme: &str, host: &str) -> anyhow::Result<()> {
        match self.mode {
            Mode::Demo => {}
            Mode::MeshEncrypts => self.plaintext.push((var.to_owned(), host.to_owned())),
            Mode::Encrypted => bail!(
                "{var}: plain {scheme} to {host} is refused outside {}: keys, passwords and tokens would cross the network unencrypted. Use the TLS scheme (https://, rediss://) and the server's CA certificate, or set {INTERNAL_PLAINTEXT}=allow when the network encrypts between services itself (a service mesh)",
                demo::DEMO_MODE
            ),
        }
        Ok(())
    }

    /// The plain-text hops to other hosts let through by `INTERNAL_PLAINTEXT=allow`, as
    /// (variable, host).
    pub fn plaintext(&self) -> impl Iterator<Item = (&str, &str)> {
        self.plaintext.iter().map(|(v, h)| (v.as_str(), h.as_str()))
    }

    /// One warning per plain-text hop that `INTERNAL_PLAINTEXT=allow` let through: at start-up,
    /// so the operator's choice is on record in every replica's log.
    pub fn warn_plaintext(&self) {
        for (var, host) in self.plaintext() {
            tracing::warn!(
                variable = var,
                host,
                "{var} is plain text to {host}, allowed by {INTERNAL_PLAINTEXT}=allow: keys and tokens on this hop are only as safe as the network's own encryption"
            );
        }
    }
}

/// The CA certificates a caller trusts for one internal service's `https://` URL, from the PEM
/// file named by its variable (`TOKEN_SERVICE_CA_CERT`, `PROJECTS_SERVICE_CA_CERT`). When set,
/// **only** these are trusted for that service (a private CA's certificate is all it should ever
/// present; a public CA has no business vouching for it); when unset, the public web PKI roots.
/// Read and checked once at start-up, so a bad file is an error naming the variable there.
#[derive(Clone)]
pub struct InternalCa {
    pem: Arc<[u8]>,
    roots: ExtraRoots,
}

impl InternalCa {
    /// The file named by `var`: `None` when unset; an error naming `var` and the file when it
    /// cannot be read or holds no certificate usable as a root.
    pub fn from_env(env: &Env, var: &str) -> anyhow::Result<Option<Self>> {
        let Some((path, pem)) = env.named_file(var)? else {
            return Ok(None);
        };
        let roots = ExtraRoots::from_pem(var, &path, &pem)?;
        Ok(Some(InternalCa {
            pem: pem.into(),
            roots,
        }))
    }

    /// The PEM text, for tonic's TLS settings ([`crate::grpc::channel`]).
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }

    /// `builder` trusting only this CA (`Some`), or the public roots it has by default (`None`).
    pub fn trust(ca: Option<&Self>, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        match ca {
            Some(ca) => builder.tls_certs_only(ca.roots.certificates().iter().cloned()),
            None => builder,
        }
    }
}

impl fmt::Debug for InternalCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InternalCa({} certificates)", self.roots.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hops(pairs: &[(&str, &str)]) -> anyhow::Result<InternalHops> {
        InternalHops::from_env(&Env::new(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }))
    }

    fn urls(raw: &[&str]) -> Vec<Url> {
        raw.iter().map(|u| u.parse().unwrap()).collect()
    }

    #[test]
    fn outside_demo_mode_plain_http_to_another_host_is_refused_naming_the_variable() {
        for env in [&[][..], &[("DEMO_MODE", "false")][..]] {
            let mut h = hops(env).unwrap();
            for list in [
                &["http://token-service:50051"][..],
                &["https://token-1:50051", "http://token-2:50051"],
                &["http://10.0.0.7:8081"],
            ] {
                let err = h.check("SOME_URL", &urls(list)).unwrap_err().to_string();
                assert!(
                    err.contains("SOME_URL")
                        && err.contains(INTERNAL_PLAINTEXT)
                        && err.contains("http://"),
                    "{list:?}: {err}"
                );
            }
            // https anywhere, and plain http on this machine, are fine.
            h.check(
                "SOME_URL",
                &urls(&[
                    "https://token-service:50051",
                    "http://127.0.0.1:50051",
                    "http://[::1]:1",
                    "http://localhost:8081",
                ]),
            )
            .unwrap();
            assert_eq!(h.plaintext().count(), 0);
        }
    }

    #[test]
    fn the_mesh_opt_out_lets_plain_text_through_and_records_it_for_the_warning() {
        let mut h = hops(&[("INTERNAL_PLAINTEXT", " allow ")]).unwrap();
        h.check(
            "TOKEN_SERVICE_URL",
            &urls(&["http://token-1:50051", "https://token-2:50051"]),
        )
        .unwrap();
        h.check("PROJECTS_SERVICE_URL", &urls(&["http://127.0.0.1:8081"]))
            .unwrap();
        assert_eq!(
            h.plaintext().collect::<Vec<_>>(),
            [("TOKEN_SERVICE_URL", "token-1")],
            "only the plain hop to another host is on record"
        );
        h.warn_plaintext();
    }

    #[test]
    fn demo_mode_stays_plain_on_its_private_networks_without_a_warning() {
        let mut h = hops(&[("DEMO_MODE", "true")]).unwrap();
        h.check("TOKEN_SERVICE_URL", &urls(&["http://token-service:50051"]))
            .unwrap();
        assert_eq!(h.plaintext().count(), 0);
    }

    #[test]
    fn anything_but_allow_is_an_error_naming_the_setting() {
        for bad in ["yes", "true", "allowed", "1"] {
            let err = hops(&[("INTERNAL_PLAINTEXT", bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains(INTERNAL_PLAINTEXT), "{bad}: {err}");
        }
        assert_eq!(
            hops(&[("INTERNAL_PLAINTEXT", " ")]).unwrap().mode,
            Mode::Encrypted
        );
        let err = hops(&[("DEMO_MODE", "maybe")]).unwrap_err().to_string();
        assert!(err.contains("DEMO_MODE"), "{err}");
    }

    #[test]
    fn the_ca_file_is_checked_at_start_up_and_named_in_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let good = tmp.path().join("ca.pem");
        std::fs::write(&good, include_bytes!("../testdata/two-cas.pem")).unwrap();
        let bad = tmp.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        let (good, bad) = (good.display().to_string(), bad.display().to_string());
        let env = Env::new(|k| match k {
            "GOOD_CA" => Some(good.clone()),
            "BAD_CA" => Some(bad.clone()),
            _ => None,
        });
        let ca = InternalCa::from_env(&env, "GOOD_CA").unwrap().unwrap();
        assert_eq!(ca.pem(), include_bytes!("../testdata/two-cas.pem"));
        assert_eq!(format!("{ca:?}"), "InternalCa(2 certificates)");
        assert!(InternalCa::from_env(&env, "UNSET_CA").unwrap().is_none());
        let err = format!("{:#}", InternalCa::from_env(&env, "BAD_CA").unwrap_err());
        assert!(err.contains("BAD_CA") && err.contains(&bad), "{err}");
    }
}
