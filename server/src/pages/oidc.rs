//! Logging in with the OpenID Connect provider: the redirect to it and the way back (see
//! [`crate::oidc`] for what is checked).

use super::*;
use crate::oidc::OidcFailure;

/// Binds a login started in this browser to its return (the state).
const OIDC_COOKIE: &str = "dexlab_oidc";

fn state_cookie(value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    // Lax, not Strict: the provider's redirect back is a cross-site navigation, which must
    // carry it.
    HeaderValue::from_str(&format!(
        "{OIDC_COOKIE}={value}; Path=/auth/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("states are URL-safe")
}

pub(super) async fn start(
    State(s): State<AppState>,
    ip: ClientIp,
    ApiQuery(q): ApiQuery<NextQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if let Err(wait) = s
        .limits
        .login_ip
        .take(&format!("ip:{}", ip.key()), Instant::now())
    {
        s.metrics.rate_limited.inc();
        let e = ApiError::rate_limited(wait);
        return html_response(e.status, login_markup(&s, next, Some(&e.message)));
    }
    match s.oidc.start(next).await {
        Ok((url, state)) => {
            let mut r = Redirect::to(&url).into_response();
            r.headers_mut()
                .append(header::SET_COOKIE, state_cookie(&state, 600, s.config.hsts));
            r
        }
        Err(f) => html_response(f.status(), login_markup(&s, next, Some(&f.message))),
    }
}

#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

pub(super) async fn callback(
    State(s): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<CallbackQuery>,
) -> Response {
    let secure = s.config.hsts;
    let cookie_state = cookie(&headers, OIDC_COOKIE).map(str::to_owned);
    let outcome = match (&q.error, &q.code, &q.state) {
        (Some(e), _, _) => Err(OidcFailure {
            reason: "provider_error",
            message: format!(
                "The login provider refused: {}",
                e.chars().take(100).collect::<String>()
            ),
        }),
        (None, Some(code), Some(state)) => {
            s.oidc.finish(code, state, cookie_state.as_deref()).await
        }
        _ => Err(OidcFailure {
            reason: "bad_callback",
            message: "The login provider's answer has no code or state; start again.".into(),
        }),
    };
    let result = match outcome {
        Ok(v) => login(&s, &ip, v).await,
        Err(f) => Err(f),
    };
    let mut r = match result {
        Ok((t, next)) => with_tokens(Redirect::to(&next).into_response(), &t, secure),
        Err(f) => {
            s.metrics.login_failures.inc();
            let audit = api::audit(
                "login_failed",
                None,
                None,
                serde_json::json!({ "method": s.oidc.method(), "reason": f.reason }),
                &ip,
            );
            if let Err(e) = s.store.add_audit(&audit).await {
                tracing::warn!("audit of a failed OIDC login: {e}");
            }
            html_response(
                f.status(),
                login_markup(&s, "/experiments", Some(&f.message)),
            )
        }
    };
    // One use: the state cookie goes either way.
    r.headers_mut()
        .append(header::SET_COOKIE, state_cookie("", 0, secure));
    r
}

/// The account of a verified address, logged in.
async fn login(
    s: &AppState,
    ip: &ClientIp,
    v: crate::oidc::Verified,
) -> Result<(TokenResponse, String), OidcFailure> {
    let store_failure = |e: &dyn std::fmt::Display| {
        tracing::warn!("OIDC login: {e}");
        OidcFailure {
            reason: "store",
            message: "The login could not be recorded; try again.".into(),
        }
    };
    let mut user = None;
    for email in &v.emails {
        let found = s
            .store
            .user_by_email(email)
            .await
            .map_err(|e| store_failure(&e))?;
        if let Some(u) = found.filter(|u| !u.disabled) {
            user = Some(u);
            break;
        }
    }
    let user = user.ok_or_else(|| OidcFailure {
        reason: "no_account",
        message: format!(
            "No enabled account has the e-mail address {}; an admin adds it with \
             `dexlab users add NAME --role ROLE --email ADDRESS`.",
            v.emails.join(" or ")
        ),
    })?;
    let detail = serde_json::json!({
        "method": s.oidc.method(),
        "issuer": s.oidc.issuer(),
        "subject": v.subject,
    });
    let tokens = api::start_login(s, ip, &user, detail)
        .await
        .map_err(|e| store_failure(&e.message))?;
    Ok((tokens, v.next))
}
