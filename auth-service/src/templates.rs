//! Server-rendered HTML: one layout, the pages, and the escaping helper every interpolated value
//! goes through. No script and no inline style anywhere, so the Content-Security-Policy can forbid
//! both; the look lives in `/static/style.css`.

use std::fmt::Write as _;

use crate::projects_client::{Listing, ProjectsError};

/// The product name shown on every page.
pub const APP_NAME: &str = "Snyk Projects Overview";

/// Escapes text for use in HTML element content and in double- or single-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page; `body` is trusted markup built in this module. In demo mode (`DEMO_MODE=true`)
/// every page says so at the top.
fn layout(title: &str, body: &str) -> String {
    static DEMO: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    layout_with(
        title,
        body,
        *DEMO.get_or_init(service_runtime::telemetry::demo_mode),
    )
}

const DEMO_BANNER: &str = "<div class=\"demo-banner\" role=\"status\">Demo mode: this app talks to a \
    <strong>fake Snyk</strong> with demo secrets. Nothing here is a real Snyk install.</div>\n";

fn layout_with(title: &str, body: &str, demo: bool) -> String {
    let body = if demo {
        format!("{DEMO_BANNER}{body}")
    } else {
        body.to_owned()
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · {app}</title>\n<link rel=\"stylesheet\" href=\"/static/style.css\">\n\
         <link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\">\n</head>\n<body>\n\
         <header class=\"site\"><a class=\"brand\" href=\"/\">{app}</a></header>\n<main>\n{body}\n</main>\n</body>\n</html>\n",
        title = escape(title),
        app = escape(APP_NAME),
    )
}

/// `GET /`.
pub fn landing() -> String {
    let body = "<section class=\"hero\">\n\
        <h1>See every Snyk project of your organizations in one place</h1>\n\
        <p>Install this app into your Snyk organizations and it lists their projects (name, type, \
        origin and status), always up to date, straight from Snyk.</p>\n\
        <ul class=\"facts\">\n\
        <li>You choose the organizations on Snyk's own consent page; the app never sees your password.</li>\n\
        <li>Access is read-only: organizations and their projects.</li>\n\
        <li>You can revoke the app at any time in Snyk's settings.</li>\n\
        </ul>\n\
        <p><a class=\"button\" id=\"install\" href=\"/auth\">Install</a></p>\n\
        </section>";
    layout("Install", body)
}

/// A page with a heading, a message and optionally a way to start again.
pub fn message(title: &str, text: &str, try_again: bool) -> String {
    let mut body = format!(
        "<section class=\"notice\">\n<h1>{}</h1>\n<p id=\"message\">{}</p>\n",
        escape(title),
        escape(text)
    );
    if try_again {
        body.push_str("<p><a class=\"button\" id=\"try-again\" href=\"/auth\">Try again</a></p>\n");
    } else {
        body.push_str("<p><a href=\"/\">Back to the start page</a></p>\n");
    }
    body.push_str("</section>");
    layout(title, &body)
}

/// The user pressed Deny on Snyk's consent page.
pub fn cancelled() -> String {
    message(
        "You cancelled the installation",
        "Nothing was installed and Snyk shared nothing with this app. You can start again whenever you like.",
        true,
    )
}

/// Snyk sent the browser back with an OAuth error other than `access_denied`.
pub fn snyk_error(code: &str, description: Option<&str>) -> String {
    let mut body = String::from(
        "<section class=\"notice\">\n<h1>Snyk could not complete the installation</h1>\n\
         <p>Snyk reported an error and did not authorize the app:</p>\n<dl class=\"error\">\n",
    );
    let _ = writeln!(
        body,
        "<dt>Error</dt><dd><code id=\"error-code\">{}</code></dd>",
        escape(code)
    );
    if let Some(d) = description {
        let _ = writeln!(
            body,
            "<dt>Details</dt><dd id=\"error-description\">{}</dd>",
            escape(d)
        );
    }
    body.push_str(
        "</dl>\n<p><a class=\"button\" id=\"try-again\" href=\"/auth\">Try again</a></p>\n</section>",
    );
    layout("Installation failed", &body)
}

/// How an install stands, as the install page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallState {
    Active,
    /// Snyk access was lost (`reason` as token-service names it, possibly empty).
    NeedsReauth {
        reason: String,
    },
}

/// One org section of the install page.
#[derive(Debug, Clone)]
pub struct OrgView {
    pub id: String,
    pub name: String,
    /// `None` when the projects were not fetched (the install needs re-authorization).
    pub projects: Option<Result<Listing, ProjectsError>>,
}

/// Everything the install page shows.
#[derive(Debug, Clone)]
pub struct InstallView {
    pub install_id: String,
    pub state: InstallState,
    pub created_at: Option<String>,
    pub scope: String,
    pub orgs: Vec<OrgView>,
}

impl InstallView {
    /// True when the page must offer a reconnect: the install says so, or an org's listing did.
    pub fn needs_reauth(&self) -> bool {
        matches!(self.state, InstallState::NeedsReauth { .. })
            || self
                .orgs
                .iter()
                .any(|o| matches!(o.projects, Some(Err(ProjectsError::NeedsReauth))))
    }
}

/// Logout is a form post (never a link: prefetchers and `<img>` tags follow links); the browser
/// sends it with our `Origin`, which `POST /logout` checks.
const LOGOUT_FORM: &str = "<form class=\"logout\" method=\"post\" action=\"/logout\">\
    <button class=\"button\" type=\"submit\" id=\"logout\">Log out</button></form>\n";

/// What Disconnect does, on the confirmation page. Only what is true of token-service's
/// `DeleteInstall`: it revokes the install's refresh token at Snyk (`/oauth2/revoke`, which
/// revokes the whole grant at once), then deletes the stored grant; it cannot remove the app from
/// Snyk's own list of installed apps.
const DISCONNECT_EFFECTS: &str = "<ul class=\"facts\" id=\"disconnect-effects\">\n\
    <li>At Snyk, the app's access for this installation is revoked at once: its tokens stop \
    working, so the app can no longer read these organizations or their projects.</li>\n\
    <li>Here, the installation and its stored credentials are deleted, and this browser no longer \
    shows it.</li>\n\
    <li>The app stays listed among your installed apps in Snyk until you remove it there (in the \
    organization's settings).</li>\n\
    <li>To see the projects again later, install the app anew: that is a new installation.</li>\n\
    </ul>\n";

/// `GET /installs/{install_id}`.
pub fn install(view: &InstallView) -> String {
    let mut body = String::from("<section>\n<h1>Your installation</h1>\n<p class=\"meta\">");
    let _ = write!(
        body,
        "Install <code id=\"install-id\">{}</code>",
        escape(&view.install_id)
    );
    if let Some(created) = &view.created_at {
        let _ = write!(body, " · installed {}", escape(created));
    }
    if !view.scope.is_empty() {
        let _ = write!(body, " · access: <code>{}</code>", escape(&view.scope));
    }
    body.push_str("</p>\n");
    if view.needs_reauth() {
        body.push_str(
            "<div class=\"banner\" id=\"reauth\" role=\"alert\">\n\
             <p><strong>Snyk access was lost; reconnect.</strong> Snyk no longer accepts this \
             installation's credentials (the app was revoked, or its access expired). Reconnect to \
             authorize the app again; this installation keeps its identity.</p>\n",
        );
        // A form post, not a link to `/auth`: the install id travels in the server-side state
        // that `POST /installs/{id}/reconnect` creates after checking this browser owns it.
        let _ = write!(
            body,
            "<form class=\"reconnect\" method=\"post\" action=\"/installs/{id}/reconnect\">\
             <button class=\"button\" type=\"submit\" id=\"reconnect\">Reconnect</button></form>\n</div>\n",
            id = escape(&view.install_id)
        );
    }
    if view.orgs.is_empty() {
        body.push_str("<p>Snyk shows this installation no organization.</p>\n");
    }
    body.push_str("<div class=\"actions\">\n");
    body.push_str(LOGOUT_FORM);
    // A link to the confirmation page (a GET changes nothing); only its form deletes.
    let _ = writeln!(
        body,
        "<a class=\"button secondary\" id=\"disconnect\" href=\"/installs/{}/disconnect\">Disconnect</a>",
        escape(&view.install_id)
    );
    body.push_str("</div>\n</section>\n");
    for org in &view.orgs {
        org_section(&mut body, org);
    }
    layout("Your installation", &body)
}

/// `GET /installs/{install_id}/disconnect`: what Disconnect does, and the form that does it.
pub fn confirm_disconnect(install_id: &str) -> String {
    let id = escape(install_id);
    let body = format!(
        "<section class=\"notice\">\n<h1>Disconnect this installation?</h1>\n\
         <p>Install <code id=\"install-id\">{id}</code></p>\n\
         {DISCONNECT_EFFECTS}\
         <form class=\"disconnect\" method=\"post\" action=\"/installs/{id}/disconnect\">\
         <button class=\"button danger\" type=\"submit\" id=\"confirm-disconnect\">Disconnect</button> \
         <a id=\"cancel\" href=\"/installs/{id}\">Cancel</a></form>\n</section>"
    );
    layout("Disconnect", &body)
}

/// `GET /disconnected`: the page after a Disconnect.
pub fn disconnected() -> String {
    let body = "<section class=\"notice\">\n<h1>Disconnected</h1>\n\
        <p id=\"message\">The installation was disconnected: its access at Snyk was revoked and its \
        stored credentials were deleted. The app stays listed among your installed apps in Snyk \
        until you remove it there.</p>\n\
        <p><a class=\"button\" id=\"install\" href=\"/auth\">Install again</a> \
        <a href=\"/\">Back to the start page</a></p>\n</section>";
    layout("Disconnected", body)
}

fn org_section(body: &mut String, org: &OrgView) {
    let _ = write!(
        body,
        "<section class=\"org\" id=\"org-{id}\">\n<h2>{name}</h2>\n",
        id = escape(&org.id),
        name = escape(&org.name)
    );
    match &org.projects {
        None => body.push_str("<p class=\"muted\">Reconnect to see this organization's projects.</p>\n"),
        Some(Ok(listing)) => {
            let noun = if listing.count == 1 { "project" } else { "projects" };
            let _ = writeln!(body, "<p class=\"count\">{} {noun}</p>", listing.count);
            if !listing.projects.is_empty() {
                body.push_str(
                    "<table>\n<thead><tr><th>Name</th><th>Type</th><th>Origin</th><th>Status</th></tr></thead>\n<tbody>\n",
                );
                for p in &listing.projects {
                    let _ = writeln!(
                        body,
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        escape(&p.name),
                        escape(&p.kind),
                        escape(&p.origin),
                        escape(&p.status)
                    );
                }
                body.push_str("</tbody>\n</table>\n");
            }
        }
        Some(Err(ProjectsError::NeedsReauth)) => {
            body.push_str("<p class=\"muted\">Reconnect to see this organization's projects.</p>\n");
        }
        Some(Err(ProjectsError::UnknownOrg)) => {
            body.push_str("<p class=\"muted\">Snyk no longer shows this organization to the app.</p>\n");
        }
        Some(Err(ProjectsError::Unavailable(_))) => body.push_str(
            "<p class=\"unavailable\">The project list is unavailable right now. Reload the page in a moment.</p>\n",
        ),
        Some(Err(ProjectsError::Failed(_))) => {
            body.push_str("<p class=\"unavailable\">The project list could not be loaded.</p>\n");
        }
        Some(Err(ProjectsError::NotInTime(_))) => body.push_str(
            "<p class=\"unavailable\">The project list was not ready in time. Reload the page to try again.</p>\n",
        ),
        Some(Err(ProjectsError::TooManyProjects)) => body.push_str(
            "<p class=\"unavailable\">This organization has more projects than the app lists at once, so they are not shown here.</p>\n",
        ),
        Some(Err(ProjectsError::RateLimited(_))) => body.push_str(
            "<p class=\"unavailable\">Snyk's request limit for this install is reached for now. Reload the page in a minute.</p>\n",
        ),
    }
    body.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_mode_is_announced_on_every_page() {
        assert!(super::layout_with("T", "<p>x</p>", true).contains("Demo mode"));
        assert!(!super::layout_with("T", "<p>x</p>", false).contains("Demo mode"));
    }

    use super::*;
    use crate::projects_client::Project;

    #[test]
    fn escapes_markup_and_both_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain text é"), "plain text é");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn no_page_has_inline_script_or_style() {
        let view = InstallView {
            install_id: "i".into(),
            state: InstallState::NeedsReauth { reason: "x".into() },
            created_at: Some("2024-01-01".into()),
            scope: "org.read".into(),
            orgs: vec![],
        };
        for page in [
            landing(),
            cancelled(),
            snyk_error("e", Some("d")),
            message("t", "m", true),
            install(&view),
            confirm_disconnect("i"),
            disconnected(),
        ] {
            for banned in ["<script", "style=", "<style", "onclick", "javascript:"] {
                assert!(!page.contains(banned), "{banned} in {page}");
            }
            assert!(page.contains("<link rel=\"stylesheet\" href=\"/static/style.css\">"));
        }
    }

    #[test]
    fn snyk_supplied_text_is_escaped() {
        let page = snyk_error("<b>x</b>", Some("<script>alert(1)</script>"));
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&lt;b&gt;x&lt;/b&gt;"));
    }

    #[test]
    fn install_page_lists_projects_and_flags_reauth() {
        let listing = Listing {
            count: 1,
            projects: vec![Project {
                name: "<evil>".into(),
                kind: "npm".into(),
                origin: "github".into(),
                status: "active".into(),
            }],
        };
        let mut view = InstallView {
            install_id: "abc".into(),
            state: InstallState::Active,
            created_at: None,
            scope: String::new(),
            orgs: vec![OrgView {
                id: "o1".into(),
                name: "Demo & Co".into(),
                projects: Some(Ok(listing)),
            }],
        };
        let page = install(&view);
        assert!(
            page.contains("Demo &amp; Co")
                && page.contains("&lt;evil&gt;")
                && page.contains("1 project<")
        );
        assert!(!page.contains("id=\"reconnect\""));
        assert!(
            page.contains(
                "<form class=\"logout\" method=\"post\" action=\"/logout\"><button class=\"button\" \
                 type=\"submit\" id=\"logout\">Log out</button></form>"
            ),
            "{page}"
        );
        view.orgs.push(OrgView {
            id: "o2".into(),
            name: "Two".into(),
            projects: Some(Err(ProjectsError::NeedsReauth)),
        });
        let page = install(&view);
        assert!(
            page.contains(
                "<form class=\"reconnect\" method=\"post\" action=\"/installs/abc/reconnect\">\
                 <button class=\"button\" type=\"submit\" id=\"reconnect\">Reconnect</button></form>"
            ),
            "Reconnect posts for this install: {page}"
        );
        assert!(
            !page.contains("href=\"/auth\""),
            "no bare link that makes a new install"
        );
        view.orgs[1].projects = Some(Err(ProjectsError::Unavailable("down".into())));
        let page = install(&view);
        assert!(page.contains("unavailable right now") && !page.contains("down"));
        view.orgs[1].projects = Some(Err(ProjectsError::NotInTime(
            std::time::Duration::from_secs(20),
        )));
        let page = install(&view);
        assert!(page.contains("not ready in time. Reload the page to try again"));
        assert!(
            page.contains("1 project<"),
            "the other org is listed: {page}"
        );
        view.orgs[1].projects = Some(Err(ProjectsError::TooManyProjects));
        let page = install(&view);
        assert!(page.contains("more projects than the app lists at once"));
        view.orgs[1].projects = Some(Err(ProjectsError::RateLimited("429 rate_limited".into())));
        let page = install(&view);
        assert!(
            page.contains("request limit for this install is reached") && !page.contains("429")
        );
    }

    #[test]
    fn every_install_page_offers_disconnect_through_a_confirmation() {
        let view = InstallView {
            install_id: "abc".into(),
            state: InstallState::Active,
            created_at: None,
            scope: String::new(),
            orgs: vec![],
        };
        assert!(
            install(&view).contains(
                "<a class=\"button secondary\" id=\"disconnect\" href=\"/installs/abc/disconnect\">Disconnect</a>"
            ),
            "a link to the confirmation page"
        );
        let confirm = confirm_disconnect("abc");
        assert!(
            confirm.contains(
                "<form class=\"disconnect\" method=\"post\" action=\"/installs/abc/disconnect\">"
            ) && confirm.contains("id=\"confirm-disconnect\"")
                && confirm.contains("<a id=\"cancel\" href=\"/installs/abc\">Cancel</a>"),
            "{confirm}"
        );
        assert!(
            confirm.contains("revoked at once") && confirm.contains("stays listed"),
            "says what happens at Snyk: {confirm}"
        );
        assert!(
            confirm_disconnect("<x>").contains("<code id=\"install-id\">&lt;x&gt;</code>"),
            "escaped"
        );
    }
}
