//! A browser as far as the install flow depends on one, over plain HTTP: cookies kept and sent
//! back, redirects shown to the test one by one, forms submitted as the page describes them.

/// What a browser does that the flow depends on: it keeps cookies per host (ports do not separate
/// cookies, as in real browsers) and sends them back; it does not follow redirects by itself, so
/// tests see each one.
pub struct Browser {
    http: reqwest::Client,
    jar: std::sync::Mutex<Vec<(String, String)>>,
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
        let http = http
            .redirect(reqwest::redirect::Policy::none())
            // A fresh connection per request: a pooled one that the server closes as idle at
            // the moment it is reused fails the request (`IncompleteMessage`), which no browser
            // would show and no test should fail on.
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Browser {
            http,
            jar: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        let res = self
            .with_cookies(self.http.get(url))
            .send()
            .await
            .expect("the server answers");
        self.remember(&res);
        res
    }

    /// Posts `form` (urlencoded) to its action, resolved against `page`.
    pub async fn submit(&self, page: &reqwest::Url, form: &HtmlForm) -> reqwest::Response {
        let action = page.join(&form.action).expect("a valid form action");
        let res = self
            .with_cookies(self.http.post(action).form(&form.fields))
            .send()
            .await
            .expect("the server answers");
        self.remember(&res);
        res
    }

    /// An empty form `POST` to `url` with extra request `headers` (`Origin`, `Sec-Fetch-Site`: what
    /// a real browser adds, or what a cross-site page makes it add).
    pub async fn post(&self, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.with_cookies(self.http.post(url)).form(&[("", ""); 0]);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.expect("the server answers");
        self.remember(&res);
        res
    }

    /// The value of cookie `name`, if the browser holds it.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar
            .lock()
            .unwrap()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// Puts a cookie in the jar as if a server had set it (to forge one).
    pub fn set_cookie(&self, name: &str, value: &str) {
        let mut jar = self.jar.lock().unwrap();
        jar.retain(|(n, _)| n != name);
        jar.push((name.to_owned(), value.to_owned()));
    }

    fn with_cookies(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let jar = self.jar.lock().unwrap();
        if jar.is_empty() {
            return req;
        }
        let header = jar
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        req.header("cookie", header)
    }

    fn remember(&self, res: &reqwest::Response) {
        for value in res.headers().get_all("set-cookie") {
            let value = value.to_str().unwrap();
            let (pair, attrs) = value.split_once(';').unwrap_or((value, ""));
            let (name, val) = pair.split_once('=').unwrap();
            let deleted = attrs
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            let mut jar = self.jar.lock().unwrap();
            jar.retain(|(n, _)| n != name.trim());
            if !deleted {
                jar.push((name.trim().to_owned(), val.trim().to_owned()));
            }
        }
    }
}

/// What a browser submits for an HTML form when the button with a given id is pressed: the
/// action, every named `<input>` and the pressed button's `name=value`.
pub struct HtmlForm {
    pub action: String,
    pub fields: Vec<(String, String)>,
}

impl HtmlForm {
    /// Parses the (first) form of `html`. Enough HTML for the fake's consent page, not more.
    pub fn parse(html: &str, button_id: &str) -> HtmlForm {
        let form_tag = *tags(html, "form").first().expect("a <form>");
        let action = attr(form_tag, "action").unwrap_or_default();
        let mut fields = Vec::new();
        for input in tags(html, "input") {
            let kind = attr(input, "type").unwrap_or_else(|| "text".into());
            if let Some(name) = attr(input, "name")
                && !matches!(kind.as_str(), "submit" | "button" | "image")
            {
                fields.push((name, attr(input, "value").unwrap_or_default()));
            }
        }
        let button = tags(html, "button")
            .into_iter()
            .find(|b| attr(b, "id").as_deref() == Some(button_id))
            .unwrap_or_else(|| panic!("no button with id {button_id}"));
        if let Some(name) = attr(button, "name") {
            fields.push((name, attr(button, "value").unwrap_or_default()));
        }
        HtmlForm { action, fields }
    }
}

/// The text of the opening tags `<name …>` of `html`.
fn tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}");
    html.match_indices(&open)
        .filter_map(|(i, _)| {
            let rest = &html[i + open.len()..];
            if !rest.starts_with([' ', '>', '\n', '\t']) {
                return None;
            }
            rest.find('>').map(|end| &rest[..end])
        })
        .collect()
}

/// The value of attribute `name="…"` in a tag's text, HTML entities decoded.
fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(
        tag[start..end]
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
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
