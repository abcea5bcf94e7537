//! Reads the fake Snyk's consent page (`GET /oauth2/authorize`, rendered by fake-snyk's
//! `authorize` module) the way a browser does: the first `<form method="post">`, its action, its
//! hidden inputs, and what pressing one of its buttons sends. The system tests walk the install
//! with it, loadgen makes its installs with it, and fake-snyk's own tests check the page they
//! render with it, so the page and its readers cannot drift apart.
//!
//! The HTML is parsed by html5ever (through `scraper`), as a browser parses it: tag and attribute
//! names in any case, quoted or bare values, character references decoded.
//!
//! ```
//! let page = fake_snyk_consent::ConsentPage::parse(
//!     r#"<form method="post" action="/decide"><input type="hidden" name="state" value="s1">
//!        <button id="approve" name="decision" value="approve">Approve</button></form>"#,
//! )
//! .unwrap();
//! assert_eq!(page.action, "/decide");
//! assert_eq!(page.press("approve").unwrap(), [("state".into(), "s1".into()), ("decision".into(), "approve".into())]);
//! ```

use std::sync::LazyLock;

use scraper::{ElementRef, Html, Selector};

/// What the page does not offer.
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
    /// No button with this id (or, without an id, this value) inside the form.
    #[error("the consent form has no {0:?} button")]
    NoButton(String),
}

/// The consent form, as read from the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentPage {
    /// The form's `action`, as written (usually relative to the page).
    pub action: String,
    /// The form's hidden inputs, `(name, value)`, in page order (the page has no other inputs).
    pub hidden: Vec<(String, String)>,
    buttons: Vec<Button>,
}

/// A `<button>` of the form.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Button {
    id: Option<String>,
    name: Option<String>,
    value: String,
}

static FORM: LazyLock<Selector> = LazyLock::new(|| selector("form"));
static INPUT: LazyLock<Selector> = LazyLock::new(|| selector("input"));
static BUTTON: LazyLock<Selector> = LazyLock::new(|| selector("button"));

fn selector(css: &str) -> Selector {
    // The selectors are constants; a typo is a bug this crate's tests catch.
    #[allow(clippy::expect_used)]
    Selector::parse(css).expect("a valid selector")
}

impl ConsentPage {
    /// Reads the first form of `html`; it must post somewhere.
    pub fn parse(html: &str) -> Result<Self, ConsentError> {
        let document = Html::parse_document(html);
        let form = document.select(&FORM).next().ok_or(ConsentError::NoForm)?;
        let method = form.value().attr("method").unwrap_or("get");
        if !method.eq_ignore_ascii_case("post") {
            return Err(ConsentError::NotPost(method.to_owned()));
        }
        let action = form
            .value()
            .attr("action")
            .filter(|a| !a.is_empty())
            .ok_or(ConsentError::NoAction)?
            .to_owned();
        let hidden = form
            .select(&INPUT)
            .filter(|input| {
                input
                    .value()
                    .attr("type")
                    .is_some_and(|t| t.eq_ignore_ascii_case("hidden"))
            })
            .filter_map(|input| {
                let name = input.value().attr("name")?;
                Some((name.to_owned(), attr_or_empty(input, "value")))
            })
            .collect();
        let buttons = form
            .select(&BUTTON)
            .map(|b| Button {
                id: b.value().attr("id").map(str::to_owned),
                name: b.value().attr("name").map(str::to_owned),
                value: attr_or_empty(b, "value"),
            })
            .collect();
        Ok(Self {
            action,
            hidden,
            buttons,
        })
    }

    /// What pressing the button `id` (`approve` or `deny`; a button without an id is found by
    /// its value) posts: the hidden fields, then the button's `name=value` if it has a name.
    pub fn press(&self, id: &str) -> Result<Vec<(String, String)>, ConsentError> {
        let button = self
            .buttons
            .iter()
            .find(|b| match &b.id {
                Some(b_id) => b_id == id,
                None => b.value == id,
            })
            .ok_or_else(|| ConsentError::NoButton(id.to_owned()))?;
        let mut fields = self.hidden.clone();
        if let Some(name) = &button.name {
            fields.push((name.clone(), button.value.clone()));
        }
        Ok(fields)
    }
}

fn attr_or_empty(element: ElementRef<'_>, name: &str) -> String {
    element.value().attr(name).unwrap_or_default().to_owned()
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

    fn pairs(fields: &[(String, String)]) -> Vec<(&str, &str)> {
        fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn the_fake_consent_form_is_read_like_a_browser_would() {
        let page = ConsentPage::parse(PAGE).unwrap();
        assert_eq!(page.action, "/oauth2/authorize/decision");
        let hidden = [
            ("response_type", "code"),
            ("client_id", "demo-client-id"),
            ("redirect_uri", "http://localhost:8080/callback?a=1&b=2"),
            ("state", "s\"t'a<t>e"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
        ];
        assert_eq!(pairs(&page.hidden), hidden);
        let approve = page.press("approve").unwrap();
        assert_eq!(pairs(&approve)[..6], hidden);
        assert_eq!(pairs(&approve)[6..], [("decision", "approve")]);
        let deny = page.press("deny").unwrap();
        assert_eq!(pairs(&deny)[6..], [("decision", "deny")]);
    }

    #[test]
    fn attribute_syntax_variants() {
        let page = "<FORM Method='POST' action=/go data-x>\
                    <input name=a value=1 type=hidden />\
                    <input type=\"text\" name=\"visible\" value=\"no\">\
                    <input type=hidden name=empty>\
                    <inputs type=hidden name=not-an-input value=x>\
                    <button value=approve name=d>ok</button></FORM>";
        let page = ConsentPage::parse(page).unwrap();
        assert_eq!(page.action, "/go");
        assert_eq!(
            page.press("approve").unwrap(),
            [
                ("a".to_owned(), "1".to_owned()),
                ("empty".to_owned(), String::new()),
                ("d".to_owned(), "approve".to_owned()),
            ]
        );
    }

    #[test]
    fn pages_without_a_usable_form_are_refused() {
        let approve = |html: &str| ConsentPage::parse(html).and_then(|p| p.press("approve"));
        assert_eq!(approve("<p>error</p>").unwrap_err(), ConsentError::NoForm);
        assert_eq!(
            approve("<form action=/x><button id=approve>").unwrap_err(),
            ConsentError::NotPost("get".into())
        );
        assert_eq!(
            approve("<form method=post><button id=approve>").unwrap_err(),
            ConsentError::NoAction
        );
        assert_eq!(
            approve("<form method=post action=/x><button id=deny value=deny></form>").unwrap_err(),
            ConsentError::NoButton("approve".into())
        );
        // A tag cut off by the end of the page is no tag at all, as in a browser.
        assert_eq!(
            approve("<form method=\"post").unwrap_err(),
            ConsentError::NoForm
        );
        // An Approve button after the form does not belong to it.
        assert_eq!(
            approve("<form method=post action=/x></form><button id=approve>").unwrap_err(),
            ConsentError::NoButton("approve".into())
        );
    }

    #[test]
    fn character_references_decode_as_in_a_browser() {
        let value = |v: &str| {
            let html = format!(
                "<form method=post action=/x><input type=hidden name=n value=\"{v}\"></form>"
            );
            ConsentPage::parse(&html).unwrap().hidden[0].1.clone()
        };
        // Unknown or broken references are kept as written...
        assert_eq!(value("a&b;c"), "a&b;c");
        // ...numeric and named ones are decoded, invalid code points replaced.
        assert_eq!(value("&#x41;&#66;&nbsp;"), "AB\u{a0}");
        assert_eq!(value("&#xD800;"), "\u{fffd}");
    }
}
