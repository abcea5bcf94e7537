//! Throwaway certificates: a CA of its own per call and a server certificate it signed.

/// The paths of a throwaway CA's certificate and of a server certificate and key it signed.
#[derive(Debug, Clone)]
pub struct Certificates {
    /// `ca.pem`: the CA a client must trust.
    pub ca: String,
    /// `server.pem`: valid for `localhost` and 127.0.0.1, for a day.
    pub cert: String,
    /// `server.key`.
    pub key: String,
}

/// A throwaway CA and a certificate it signs for `localhost` and 127.0.0.1, made with the
/// openssl CLI in `dir` (each call a new CA: two directories, two CAs that trust nothing of
/// each other).
pub fn certificates(dir: &std::path::Path) -> Certificates {
    certificates_for(dir, &[])
}

/// [`certificates`] whose server certificate also names the hosts `names` (e.g. a container's
/// service name).
pub fn certificates_for(dir: &std::path::Path, names: &[&str]) -> Certificates {
    let path = |name: &str| dir.join(name).display().to_string();
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| {
                panic!("openssl is installed (Debian: apt-get install -y openssl): {e}")
            });
        assert!(status.success(), "openssl {args:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        format!(
            "subjectAltName=DNS:localhost,IP:127.0.0.1{}\nbasicConstraints=CA:FALSE\n",
            names
                .iter()
                .map(|n| format!(",DNS:{n}"))
                .collect::<String>()
        ),
    )
    .expect("ext.cnf is written");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    Certificates {
        ca: path("ca.pem"),
        cert: path("server.pem"),
        key: path("server.key"),
    }
}
