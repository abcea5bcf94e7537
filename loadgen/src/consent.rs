//! Reading the fake Snyk's consent page the way a browser would, with the reader fake-snyk's
//! page is tested against ([`fake_snyk_consent`]), and reading the redirect that comes back.

use fake_snyk_consent::ConsentPage;
use url::Url;

/// What the consent page or the redirect after it could not give us.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    /// The page has no form to approve with.
    #[error(transparent)]
    Page(#[from] fake_snyk_consent::ConsentError),
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
    let page = ConsentPage::parse(html)?;
    let fields = page.press("approve")?;
    Ok(ConsentForm {
        action: page.action,
        fields,
    })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn approving_posts_the_hidden_fields_and_the_approve_button() {
        let page = "<form method=post action=/decide>\
                    <input type=hidden name=state value=s1>\
                    <button id=deny name=decision value=deny>Deny</button>\
                    <button id=approve name=decision value=approve>Approve</button></form>";
        assert_eq!(
            parse_consent_page(page).unwrap(),
            ConsentForm {
                action: "/decide".into(),
                fields: vec![
                    ("state".into(), "s1".into()),
                    ("decision".into(), "approve".into())
                ],
            }
        );
        assert_eq!(
            parse_consent_page("<p>error</p>").unwrap_err(),
            ConsentError::Page(fake_snyk_consent::ConsentError::NoForm)
        );
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
