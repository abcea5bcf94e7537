//! Reading the fake Snyk's consent page the way a browser would: the form's action, its hidden
//! inputs and the Approve button; and reading the redirect that comes back.
//!
//! This is a small tag scanner, not an HTML parser: enough for a form whose attribute values are
//! quoted and escaped (as the fake writes them), strict enough to fail loudly on anything else.

use url::Url;

/// What the consent page could not give us.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    /// No `<form>` on the page.
    #[error("the consent page has no form")]
    NoForm,
    /// The form is not `method="post"`.
    #[error("the consent form's method is {0:?}, not post")]
    NotPost(String),
    /// The form has no `action`.
    #[error("the consent form has no action")]
    NoAction,
    /// A tag never ends.
    #[error("unterminated <{0}> tag")]
    Unterminated(String),
    /// No button with `id="approve"` (or `value="approve"`) inside the form.
    #[error("the consent form has no Approve button")]
    NoApproveButton,
    /// The redirect has no usable `Location`.
    #[error("the redirect location {0:?} is not a URL")]
    BadLocation(String),
    /// The authorization server said no.
    #[error("the authorization was refused: {error}: {description}")]
    Refused {
        /// The OAuth `error`.
        error: String,
        /// Its `error_description`.
        description: String,
    },
    /// The redirect carries another request's `state`.
    #[error("the redirect's state does not match the request's")]
    StateMismatch,
    /// The redirect has no `code`.
    #[error("the redirect has no code")]
    NoCode,
}

/// The form to post to approve the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentForm {
    /// The form's `action`, as written (usually relative to the page).
    pub action: String,
    /// The hidden fields followed by the Approve button's `name=value`, in page order.
    pub fields: Vec<(String, String)>,
}

/// Finds the first `<form method="post">` and what posting it with Approve sends.
pub fn parse_consent_page(html: &str) -> Result<ConsentForm, ConsentError> {
    let form = tags(html, "form")?
        .into_iter()
        .next()
        .ok_or(ConsentError::NoForm)?;
    let method = attr(&form.attrs, "method").unwrap_or("get");
    if !method.eq_ignore_ascii_case("post") {
        return Err(ConsentError::NotPost(method.to_owned()));
    }
    let action = attr(&form.attrs, "action")
        .filter(|a| !a.is_empty())
        .ok_or(ConsentError::NoAction)?
        .to_owned();
    let body_end = find_ci(&html[form.end..], "</form")
        .map(|i| form.end + i)
        .unwrap_or(html.len());
    let body = &html[form.end..body_end];

    let mut fields = Vec::new();
    for input in tags(body, "input")? {
        let hidden = attr(&input.attrs, "type").is_some_and(|t| t.eq_ignore_ascii_case("hidden"));
        if let (true, Some(name)) = (hidden, attr(&input.attrs, "name")) {
            let value = attr(&input.attrs, "value").unwrap_or("");
            fields.push((name.to_owned(), value.to_owned()));
        }
    }
    let approve = tags(body, "button")?
        .into_iter()
        .find(|b| {
            attr(&b.attrs, "id") == Some("approve")
                || (attr(&b.attrs, "value") == Some("approve") && attr(&b.attrs, "id").is_none())
        })
        .ok_or(ConsentError::NoApproveButton)?;
    // A submit button without a name sends nothing; with one, it sends name=value.
    if let Some(name) = attr(&approve.attrs, "name") {
        let value = attr(&approve.attrs, "value").unwrap_or("");
        fields.push((name.to_owned(), value.to_owned()));
    }
    Ok(ConsentForm { action, fields })
}

/// The authorization code in the `Location` of the decision's redirect, after checking `state`.
pub fn code_from_redirect(location: &str, expected_state: &str) -> Result<String, ConsentError> {
    let url = Url::parse(location).map_err(|_| ConsentError::BadLocation(location.to_owned()))?;
    let get = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if let Some(error) = get("error") {
        return Err(ConsentError::Refused {
            error,
            description: get("error_description").unwrap_or_default(),
        });
    }
    if get("state").as_deref() != Some(expected_state) {
        return Err(ConsentError::StateMismatch);
    }
    get("code")
        .filter(|c| !c.is_empty())
        .ok_or(ConsentError::NoCode)
}

/// One start tag: its attributes (names lower-cased, values unescaped) and the byte offset just
/// after its `>`.
#[derive(Debug)]
struct Tag {
    attrs: Vec<(String, String)>,
    end: usize,
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// ASCII case-insensitive `find`.
fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// Every `<name …>` start tag in `html`, in order.
fn tags(html: &str, name: &str) -> Result<Vec<Tag>, ConsentError> {
    let open = format!("<{name}");
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = find_ci(&html[from..], &open) {
        let start = from + i + open.len();
        // `<formx` is another tag: the name must end here.
        let next = html[start..].chars().next();
        if !matches!(next, Some(c) if c.is_ascii_whitespace() || c == '>' || c == '/') {
            from = start;
            continue;
        }
        let (attrs, len) = attributes(&html[start..])
            .ok_or_else(|| ConsentError::Unterminated(name.to_owned()))?;
        from = start + len;
        found.push(Tag { attrs, end: from });
    }
    Ok(found)
}

/// Parses attributes up to the tag's closing `>`; returns them and the length consumed
/// (including the `>`), or `None` if the tag does not end.
fn attributes(s: &str) -> Option<(Vec<(String, String)>, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut attrs = Vec::new();
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        if *b.get(i)? == b'>' {
            return Some((attrs, i + 1));
        }
        let name_start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let name = s[name_start..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if b.get(i) == Some(&b'=') {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            match b.get(i)? {
                &q @ (b'"' | b'\'') => {
                    let close = s[i + 1..].find(q as char)? + i + 1;
                    value = unescape(&s[i + 1..close]);
                    i = close + 1;
                }
                _ => {
                    let start = i;
                    while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                        i += 1;
                    }
                    value = unescape(&s[start..i]);
                }
            }
        }
        attrs.push((name, value));
    }
}

/// Decodes the character references an attribute value may hold: the five named ones and numeric
/// ones; anything else is kept as written.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').and_then(|semi| {
            let entity = &rest[1..semi];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let code = if let Some(hex) = entity
                        .strip_prefix("#x")
                        .or_else(|| entity.strip_prefix("#X"))
                    {
                        u32::from_str_radix(hex, 16).ok()
                    } else {
                        entity.strip_prefix('#').and_then(|d| d.parse().ok())
                    };
                    code.and_then(char::from_u32)
                }
            };
            c.map(|c| (c, semi + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The shape fake-snyk renders (see fake-snyk/src/authorize.rs), with escaped values.
    const PAGE: &str = r#"<!doctype html><html><head><title>Authorize app</title></head><body>
<h1>Authorize app</h1>
<p>The app <strong id="client_id">demo-client-id</strong> asks for access with these scopes:</p>
<ul id="scopes">
  <li>org.read</li>
</ul>
<form method="post" action="/oauth2/authorize/decision">
  <input type="hidden" name="response_type" value="code">
  <input type="hidden" name="client_id" value="demo-client-id">
  <input type="hidden" name="redirect_uri" value="http://localhost:8080/callback?a=1&amp;b=2">
  <input type="hidden" name="state" value="s&quot;t&#39;a&lt;t&gt;e">
  <input type="hidden" name="code_challenge" value="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM">
  <input type="hidden" name="code_challenge_method" value="S256">
  <button type="submit" id="approve" name="decision" value="approve">Approve</button>
  <button type="submit" id="deny" name="decision" value="deny">Deny</button>
</form></body></html>"#;

    #[test]
    fn the_fake_consent_form_is_read_like_a_browser_would() {
        let form = parse_consent_page(PAGE).unwrap();
        assert_eq!(form.action, "/oauth2/authorize/decision");
        let fields: Vec<(&str, &str)> = form
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("response_type", "code"),
                ("client_id", "demo-client-id"),
                ("redirect_uri", "http://localhost:8080/callback?a=1&b=2"),
                ("state", "s\"t'a<t>e"),
                (
                    "code_challenge",
                    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
                ),
                ("code_challenge_method", "S256"),
                ("decision", "approve"),
            ]
        );
    }

    #[test]
    fn attribute_syntax_variants() {
        let page = "<FORM Method='POST' action=/go data-x>\
                    <input name=a value=1 type=hidden />\
                    <input type=\"text\" name=\"visible\" value=\"no\">\
                    <input type=hidden name=empty>\
                    <inputs type=hidden name=not-an-input value=x>\
                    <button value=approve name=d>ok</button></FORM>";
        let form = parse_consent_page(page).unwrap();
        assert_eq!(form.action, "/go");
        assert_eq!(
            form.fields,
            [
                ("a".to_owned(), "1".to_owned()),
                ("empty".to_owned(), String::new()),
                ("d".to_owned(), "approve".to_owned()),
            ]
        );
    }

    #[test]
    fn pages_without_a_usable_form_are_refused() {
        assert_eq!(
            parse_consent_page("<p>error</p>").unwrap_err(),
            ConsentError::NoForm
        );
        assert_eq!(
            parse_consent_page("<form action=/x><button id=approve>").unwrap_err(),
            ConsentError::NotPost("get".into())
        );
        assert_eq!(
            parse_consent_page("<form method=post><button id=approve>").unwrap_err(),
            ConsentError::NoAction
        );
        assert_eq!(
            parse_consent_page("<form method=post action=/x><button id=deny value=deny></form>")
                .unwrap_err(),
            ConsentError::NoApproveButton
        );
        assert_eq!(
            parse_consent_page("<form method=\"post").unwrap_err(),
            ConsentError::Unterminated("form".into())
        );
        // An Approve button after the form does not belong to it.
        assert_eq!(
            parse_consent_page("<form method=post action=/x></form><button id=approve>")
                .unwrap_err(),
            ConsentError::NoApproveButton
        );
    }

    #[test]
    fn unknown_or_broken_references_are_kept() {
        assert_eq!(unescape("a&b;c&amp"), "a&b;c&amp");
        assert_eq!(unescape("&#x41;&#66;&nbsp;"), "AB&nbsp;");
        assert_eq!(unescape("&#xD800;"), "&#xD800;");
    }

    #[test]
    fn the_code_comes_from_the_redirect() {
        assert_eq!(
            code_from_redirect(
                "http://localhost:8080/callback?code=snyk_ac_123&state=s1",
                "s1"
            )
            .unwrap(),
            "snyk_ac_123"
        );
        assert_eq!(
            code_from_redirect("http://localhost:8080/callback?code=c&state=other", "s1")
                .unwrap_err(),
            ConsentError::StateMismatch
        );
        assert_eq!(
            code_from_redirect("http://localhost:8080/callback?state=s1", "s1").unwrap_err(),
            ConsentError::NoCode
        );
        assert_eq!(
            code_from_redirect(
                "http://localhost:8080/callback?error=access_denied&error_description=no&state=s1",
                "s1"
            )
            .unwrap_err(),
            ConsentError::Refused {
                error: "access_denied".into(),
                description: "no".into()
            }
        );
        assert!(matches!(
            code_from_redirect("/relative?code=x", "s").unwrap_err(),
            ConsentError::BadLocation(_)
        ));
    }
}
