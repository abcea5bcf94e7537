//! A browser as far as the install flow depends on one, over plain HTTP: cookies kept and sent
//! back, redirects shown to the test one by one, the consent page's buttons pressed as the page
//! describes them.

use std::sync::Arc;

use fake_snyk_consent::ConsentPage;
use reqwest::cookie::{CookieStore as _, Jar};

/// What a browser does that the flow depends on: it keeps cookies per host in reqwest's cookie
/// store (ports do not separate cookies, as in real browsers) and sends them back; it does not
/// follow redirects by itself, so tests see each one.
pub struct Browser {
    http: reqwest::Client,
    jar: Arc<Jar>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser::with_client(reqwest::Client::builder())
    }

    /// A browser that trusts the CA certificates of `ca_pem` besides the platform's roots.
    pub fn trusting(ca_pem: &[u8]) -> Browser {
        Browser::with_client(client_trusting(ca_pem))
    }

    /// A browser over `http` (e.g. one that trusts a test CA), redirects turned off.
    pub fn with_client(http: reqwest::ClientBuilder) -> Browser {
        let jar = Arc::new(Jar::default());
        let http = http
            .cookie_provider(Arc::clone(&jar))
            .redirect(reqwest::redirect::Policy::none())
            // A fresh connection per request: a pooled one that the server closes as idle at
            // the moment it is reused fails the request (`IncompleteMessage`), which no browser
            // would show and no test should fail on.
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Browser { http, jar }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.expect("the server answers")
    }

    /// Presses the button with id `button` (`approve` or `deny`) on the consent page `html`,
    /// shown at `page`: posts what the form holds to its action, resolved against `page`.
    pub async fn press(&self, page: &reqwest::Url, html: &str, button: &str) -> reqwest::Response {
        let consent = ConsentPage::parse(html).expect("a consent form on the page");
        let fields = consent
            .press(button)
            .expect("the button on the consent form");
        let action = page.join(&consent.action).expect("a valid form action");
        self.http
            .post(action)
            .form(&fields)
            .send()
            .await
            .expect("the server answers")
    }

    /// An empty form `POST` to `url` with extra request `headers` (`Origin`, `Sec-Fetch-Site`: what
    /// a real browser adds, or what a cross-site page makes it add).
    pub async fn post(&self, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.http.post(url).form(&[("", ""); 0]);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("the server answers")
    }

    /// The value of cookie `name` that the browser would send to `url`, if it holds one.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        let sent = self.jar.cookies(&reqwest::Url::parse(url).unwrap())?;
        sent.to_str()
            .unwrap()
            .split("; ")
            .filter_map(|pair| pair.split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_owned())
    }

    /// Puts a cookie for the whole site of `url` in the jar, as if the site had set it (to forge
    /// one).
    pub fn set_cookie(&self, url: &str, name: &str, value: &str) {
        self.jar.add_cookie_str(
            &format!("{name}={value}; Path=/"),
            &reqwest::Url::parse(url).unwrap(),
        );
    }
}

/// An HTTP client builder that trusts the CA certificates of `ca_pem` besides the platform's
/// roots (as the services do with `SNYK_CA_CERT`).
pub fn client_trusting(ca_pem: &[u8]) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(ca_pem).expect("PEM certificates"))
}

/// The `Location` header of a redirect (asserted present).
pub fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .expect("a Location")
        .to_str()
        .expect("a readable Location")
        .to_owned()
}
