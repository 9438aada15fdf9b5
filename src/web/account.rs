//! Sign-up, sign-in, sign-out, forgotten passwords, address checks and the profile page
//! (details, password, sessions, API tokens, export and deletion).

use std::collections::HashMap;

use askama::Template;
use axum::{
    extract::{Query, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Form, Router,
};
use serde::Deserialize;
use tower_sessions::Session;

use super::{redirect, render, AnonCtx, Ctx, Layout};
use crate::{
    accounts::{self, FieldError, SignIn, SignUpForm, SignedUp},
    auth::{
        end_session,
        extract::safe_next,
        renew_session, start_session,
        tokens::{self, short_time, NewToken},
        ClientIp, Device,
    },
    error::{AppError, AppResult},
    state::AppState,
    store::{
        account_data, api_tokens,
        sessions::{self as session_store, key_of},
        users::{self, ProfileUpdate},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/signup", get(signup_page).post(signup))
        .route("/logout", post(logout))
        .route("/password/forgot", get(forgot_page).post(forgot))
        .route("/password/reset", get(reset_page).post(reset))
        .route("/verify-email", get(verify_email))
        .route("/profile", get(profile_page).post(update_profile))
        .route("/profile/password", post(change_password))
        .route("/profile/sessions/revoke", post(revoke_session))
        .route(
            "/profile/sessions/revoke-others",
            post(revoke_other_sessions),
        )
        .route("/profile/tokens", post(create_token))
        .route("/profile/tokens/revoke", post(revoke_token))
        .route("/profile/export", get(export))
        .route("/profile/delete", post(delete_account))
}

type Errors = HashMap<&'static str, &'static str>;

fn errors_of(list: &[FieldError]) -> Errors {
    let mut map = HashMap::new();
    for e in list {
        map.entry(e.field).or_insert(e.message);
    }
    map
}

fn unprocessable(body: axum::response::Html<String>) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, body).into_response()
}

#[derive(Template)]
#[template(path = "pages/login.html")]
struct LoginPage {
    layout: Layout,
    login: String,
    next: String,
    error: Option<String>,
    notice: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "pages/login.html", block = "form")]
struct LoginForm {
    layout: Layout,
    login: String,
    next: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/notice.html")]
struct NoticePage {
    layout: Layout,
    heading: &'static str,
    message: &'static str,
    link: &'static str,
    link_text: &'static str,
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
    /// Why the visitor is here: `reset`, `verified`, `deleted`.
    done: Option<String>,
}

async fn login_page(ctx: AnonCtx, Query(q): Query<LoginQuery>) -> AppResult<Response> {
    if ctx.signed_in {
        return Ok(redirect(false, &safe_next(q.next.as_deref())));
    }
    let notice = match q.done.as_deref() {
        Some("reset") => Some("Your password was changed. Sign in with the new one."),
        Some("verified") => Some("Your address is confirmed. Sign in to start."),
        Some("deleted") => Some("Your account was deleted. Goodbye!"),
        _ => None,
    };
    Ok(render(&LoginPage {
        layout: ctx.layout,
        login: String::new(),
        next: safe_next(q.next.as_deref()),
        error: None,
        notice,
    })?
    .into_response())
}

#[derive(Deserialize)]
struct LoginInput {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    ctx: AnonCtx,
    session: Session,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(input): Form<LoginInput>,
) -> AppResult<Response> {
    let next = safe_next(input.next.as_deref());
    let error = match accounts::sign_in(&state, ip, &input.login, &input.password).await? {
        SignIn::Yes(user) => {
            start_session(&session, &user, &Device::from_request(&headers, ip)).await?;
            return Ok(redirect(ctx.htmx, &next));
        }
        SignIn::No => "Incorrect email, username or password.",
        SignIn::Unverified => {
            "Confirm your email address first: we have sent you a link (check your spam folder too)."
        }
    };
    let (layout, login, error) = (ctx.layout, input.login, Some(error.to_string()));
    let body = if ctx.htmx {
        render(&LoginForm {
            layout,
            login,
            next,
            error,
        })?
    } else {
        render(&LoginPage {
            layout,
            login,
            next,
            error,
            notice: None,
        })?
    };
    Ok(unprocessable(body))
}

#[derive(Template)]
#[template(path = "pages/signup.html")]
struct SignupPage {
    layout: Layout,
    username: String,
    email: String,
    errors: Errors,
}

#[derive(Template)]
#[template(path = "pages/signup.html", block = "form")]
struct SignupForm {
    layout: Layout,
    username: String,
    email: String,
    errors: Errors,
}

async fn signup_page(ctx: AnonCtx) -> AppResult<Response> {
    if ctx.signed_in {
        return Ok(redirect(false, "/chats"));
    }
    Ok(render(&SignupPage {
        layout: ctx.layout,
        username: String::new(),
        email: String::new(),
        errors: Errors::new(),
    })?
    .into_response())
}

#[derive(Deserialize)]
struct SignupInput {
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_again: String,
}

/// Creates the account: the sign-up limit is counted before anything is checked (so the
/// form cannot be used to ask which names are taken without limit), and the form is
/// checked once.
async fn signup(
    State(state): State<AppState>,
    ctx: AnonCtx,
    session: Session,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(input): Form<SignupInput>,
) -> AppResult<Response> {
    let form = SignUpForm {
        username: &input.username,
        email: &input.email,
        password: &input.password,
        password_again: Some(&input.password_again),
    };
    let errors = match accounts::sign_up(&state, ip, form).await? {
        Ok(SignedUp::Ready(user)) => {
            start_session(&session, &user, &Device::from_request(&headers, ip)).await?;
            return Ok(redirect(ctx.htmx, "/chats"));
        }
        Ok(SignedUp::NeedsVerification(_)) => {
            let page = render(&NoticePage {
                layout: ctx.layout,
                heading: "Check your email",
                message: "We have sent you a link to confirm your address. Open it, then sign in.",
                link: "/login",
                link_text: "Go to sign-in",
            })?;
            return Ok(if ctx.htmx {
                redirect(true, "/login")
            } else {
                page.into_response()
            });
        }
        Err(list) => errors_of(&list),
    };
    let (layout, username, email) = (ctx.layout, input.username, input.email);
    let body = if ctx.htmx {
        render(&SignupForm {
            layout,
            username,
            email,
            errors,
        })?
    } else {
        render(&SignupPage {
            layout,
            username,
            email,
            errors,
        })?
    };
    Ok(unprocessable(body))
}

async fn logout(session: Session, headers: HeaderMap) -> AppResult<Response> {
    end_session(&session).await?;
    Ok(redirect(super::is_htmx(&headers), "/login"))
}

#[derive(Template)]
#[template(path = "pages/forgot_password.html")]
struct ForgotPage {
    layout: Layout,
    email: String,
    error: Option<&'static str>,
    sent: bool,
    minutes: i64,
}

async fn forgot_page(ctx: AnonCtx) -> AppResult<Response> {
    Ok(render(&ForgotPage {
        layout: ctx.layout,
        email: String::new(),
        error: None,
        sent: false,
        minutes: accounts::RESET_LINK_MINUTES,
    })?
    .into_response())
}

#[derive(Deserialize)]
struct ForgotInput {
    #[serde(default)]
    email: String,
}

/// The same answer whether or not the address has an account.
async fn forgot(
    State(state): State<AppState>,
    ctx: AnonCtx,
    ClientIp(ip): ClientIp,
    Form(input): Form<ForgotInput>,
) -> AppResult<Response> {
    let mut page = ForgotPage {
        layout: ctx.layout,
        email: input.email.clone(),
        error: None,
        sent: true,
        minutes: accounts::RESET_LINK_MINUTES,
    };
    match accounts::request_password_reset(&state, ip, &input.email).await {
        Ok(()) => Ok(render(&page)?.into_response()),
        Err(AppError::BadRequest(_)) => {
            page.sent = false;
            page.error = Some("Enter an email address such as name@example.com.");
            Ok(unprocessable(render(&page)?))
        }
        Err(e) => Err(e),
    }
}

#[derive(Template)]
#[template(path = "pages/reset_password.html")]
struct ResetPage {
    layout: Layout,
    token: String,
    link_error: Option<&'static str>,
    errors: Errors,
}

#[derive(Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// The form of a reset link. Showing it does not use the link up; setting the password
/// does.
async fn reset_page(
    State(state): State<AppState>,
    ctx: AnonCtx,
    Query(q): Query<TokenQuery>,
) -> AppResult<Response> {
    let valid = accounts::reset_link_is_valid(&state, &q.token).await?;
    let page = ResetPage {
        layout: ctx.layout,
        token: q.token,
        link_error: (!valid).then_some(accounts::INVALID_LINK),
        errors: Errors::new(),
    };
    let body = render(&page)?;
    // The link's secret is in this page's address: keep it out of any Referer.
    let mut response = if valid {
        body.into_response()
    } else {
        (StatusCode::NOT_FOUND, body).into_response()
    };
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct ResetInput {
    #[serde(default)]
    token: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_again: String,
}

async fn reset(
    State(state): State<AppState>,
    ctx: AnonCtx,
    session: Session,
    Form(input): Form<ResetInput>,
) -> AppResult<Response> {
    match accounts::reset_password(
        &state,
        &input.token,
        &input.new_password,
        Some(&input.new_password_again),
    )
    .await?
    {
        Ok(_) => {
            // This browser too: it may hold a session of the account, now signed out.
            end_session(&session).await?;
            Ok(redirect(ctx.htmx, "/login?done=reset"))
        }
        Err(e) => {
            let (link_error, errors) = if e.field == "token" {
                (Some(e.message), Errors::new())
            } else {
                (None, Errors::from([(e.field, e.message)]))
            };
            let page = ResetPage {
                layout: ctx.layout,
                token: input.token,
                link_error,
                errors,
            };
            Ok(unprocessable(render(&page)?))
        }
    }
}

async fn verify_email(
    State(state): State<AppState>,
    ctx: AnonCtx,
    Query(q): Query<TokenQuery>,
) -> AppResult<Response> {
    if accounts::verify_email(&state, &q.token).await? {
        return Ok(redirect(false, "/login?done=verified"));
    }
    let page = NoticePage {
        layout: ctx.layout,
        heading: "This link does not work",
        message: "It is unknown, used or expired. Sign in to get a new one.",
        link: "/login",
        link_text: "Go to sign-in",
    };
    Ok((StatusCode::NOT_FOUND, render(&page)?).into_response())
}

struct SessionRow {
    key: String,
    browser: String,
    created: String,
    last_seen: String,
    ip: String,
    current: bool,
}

struct TokenRow {
    id: i32,
    name: String,
    scope: &'static str,
    created: String,
    expires: String,
    last_used: String,
}

/// A short name for a browser from its user agent, for the list of sessions.
fn browser_name(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.filter(|ua| !ua.is_empty()) else {
        return "Unknown browser".into();
    };
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    let system = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b.to_string(),
        _ => ua.chars().take(60).collect(),
    }
}

#[derive(Template)]
#[template(path = "pages/profile.html")]
struct ProfilePage {
    layout: Layout,
    username: String,
    email: String,
    display_name: String,
    first_name: String,
    last_name: String,
    birthdate: String,
    errors: Errors,
    notice: Option<&'static str>,
    sessions: Vec<SessionRow>,
    tokens: Vec<TokenRow>,
    new_token: Option<String>,
}

impl ProfilePage {
    async fn load(
        state: &AppState,
        ctx: Ctx,
        session: &Session,
        errors: Errors,
        notice: Option<&'static str>,
    ) -> AppResult<Self> {
        let mut layout = ctx.layout;
        layout.section = "profile";
        let u = ctx.user;
        let current = session.id().map(|id| key_of(&id));
        let sessions = session_store::for_user(&state.db, u.user_id)
            .await?
            .into_iter()
            .map(|s| SessionRow {
                current: current.as_deref() == Some(s.session_key.as_str()),
                browser: browser_name(s.user_agent.as_deref()),
                created: short_time(Some(s.created_date_time)),
                last_seen: short_time(Some(s.last_seen_date_time)),
                ip: s.ip.unwrap_or_default(),
                key: s.session_key,
            })
            .collect();
        let tokens = api_tokens::for_user(&state.db, u.user_id)
            .await?
            .into_iter()
            .map(|t| TokenRow {
                id: t.token_id,
                scope: if t.scope == "read" {
                    "read only"
                } else {
                    "read and write"
                },
                name: t.name,
                created: short_time(Some(t.created_date_time)),
                expires: short_time(t.expires_date_time),
                last_used: short_time(t.last_used_date_time),
            })
            .collect();
        Ok(Self {
            layout,
            display_name: u.display_name.unwrap_or_default(),
            username: u.username,
            email: u.email,
            first_name: u.first_name.unwrap_or_default(),
            last_name: u.last_name.unwrap_or_default(),
            birthdate: u
                .birthdate
                .map(|d| d.date().to_string())
                .unwrap_or_default(),
            errors,
            notice,
            sessions,
            tokens,
            new_token: None,
        })
    }
}

async fn profile_page(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Session,
) -> AppResult<Response> {
    let page = ProfilePage::load(&state, ctx, &session, Errors::new(), None).await?;
    Ok(render(&page)?.into_response())
}

#[derive(Deserialize)]
struct ProfileInput {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    birthdate: String,
}

fn optional_name(
    raw: &str,
    max: usize,
    field: &'static str,
    errors: &mut Errors,
) -> Option<String> {
    let trimmed = raw.trim();
    if trimmed.chars().count() > max {
        errors.insert(
            field,
            if max == 30 {
                "at most 30 characters"
            } else {
                "at most 50 characters"
            },
        );
        return None;
    }
    if trimmed.chars().any(char::is_control) {
        errors.insert(field, "no control characters");
        return None;
    }
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

async fn update_profile(
    State(state): State<AppState>,
    mut ctx: Ctx,
    session: Session,
    Form(input): Form<ProfileInput>,
) -> AppResult<Response> {
    let mut errors = Errors::new();
    let display_name = optional_name(&input.display_name, 50, "display_name", &mut errors);
    let first_name = optional_name(&input.first_name, 30, "first_name", &mut errors);
    let last_name = optional_name(&input.last_name, 30, "last_name", &mut errors);
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let birthdate = match input.birthdate.trim() {
        "" => None,
        raw => match time::Date::parse(raw, &format) {
            Ok(d) if d <= time::OffsetDateTime::now_utc().date() && d.year() >= 1900 => Some(d),
            _ => {
                errors.insert("birthdate", "enter a date in the past, as YYYY-MM-DD");
                None
            }
        },
    };
    if !errors.is_empty() {
        ctx.user.display_name = Some(input.display_name);
        ctx.user.first_name = Some(input.first_name);
        ctx.user.last_name = Some(input.last_name);
        let mut page = ProfilePage::load(&state, ctx, &session, errors, None).await?;
        page.birthdate = input.birthdate;
        return Ok(unprocessable(render(&page)?));
    }
    let update = ProfileUpdate {
        first_name,
        last_name,
        birthdate,
    };
    users::update_profile(&state.db, ctx.user.user_id, &update).await?;
    users::set_display_name(&state.db, ctx.user.user_id, display_name.as_deref()).await?;
    ctx.user.first_name = update.first_name;
    ctx.user.last_name = update.last_name;
    ctx.user.display_name = display_name;
    ctx.user.birthdate = update
        .birthdate
        .map(|d| time::PrimitiveDateTime::new(d, time::Time::MIDNIGHT));
    let page =
        ProfilePage::load(&state, ctx, &session, Errors::new(), Some("Profile saved.")).await?;
    Ok(render(&page)?.into_response())
}

#[derive(Deserialize)]
struct PasswordInput {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_again: String,
}

/// The key of this browser's session row.
fn current_key(session: &Session) -> Option<String> {
    session.id().map(|id| key_of(&id))
}

/// Changes the password and signs out every other session; this one gets a fresh
/// session id.
async fn change_password(
    State(state): State<AppState>,
    mut ctx: Ctx,
    session: Session,
    Form(input): Form<PasswordInput>,
) -> AppResult<Response> {
    if input.new_password != input.new_password_again {
        let errors = Errors::from([("new_password_again", "passwords do not match")]);
        let page = ProfilePage::load(&state, ctx, &session, errors, None).await?;
        return Ok(unprocessable(render(&page)?));
    }
    let keep = current_key(&session);
    match accounts::change_password(
        &state,
        &ctx.user,
        &input.current_password,
        &input.new_password,
        keep.as_deref(),
    )
    .await?
    {
        Ok(user) => {
            renew_session(&session, &user).await?;
            ctx.user = user;
            ctx.layout.csrf = crate::auth::csrf_token(&session).await?;
            let notice = Some("Password changed. Other sessions were signed out.");
            let page = ProfilePage::load(&state, ctx, &session, Errors::new(), notice).await?;
            Ok(render(&page)?.into_response())
        }
        Err(e) => {
            let errors = Errors::from([(e.field, e.message)]);
            let page = ProfilePage::load(&state, ctx, &session, errors, None).await?;
            Ok(unprocessable(render(&page)?))
        }
    }
}

#[derive(Deserialize)]
struct RevokeSessionInput {
    #[serde(default)]
    session: String,
}

async fn revoke_session(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(input): Form<RevokeSessionInput>,
) -> AppResult<Response> {
    if !session_store::delete_one(&state.db, ctx.user.user_id, &input.session).await? {
        return Err(AppError::not_found("That session is already signed out."));
    }
    Ok(redirect(ctx.htmx, "/profile"))
}

async fn revoke_other_sessions(
    State(state): State<AppState>,
    mut ctx: Ctx,
    session: Session,
) -> AppResult<Response> {
    let keep = current_key(&session);
    let user = accounts::sign_out_everywhere(&state, &ctx.user, keep.as_deref()).await?;
    renew_session(&session, &user).await?;
    ctx.user = user;
    let notice = Some("Signed out everywhere else.");
    let page = ProfilePage::load(&state, ctx, &session, Errors::new(), notice).await?;
    Ok(render(&page)?.into_response())
}

#[derive(Deserialize)]
struct TokenInput {
    #[serde(default)]
    name: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    expires_in_days: String,
}

async fn create_token(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Session,
    Form(input): Form<TokenInput>,
) -> AppResult<Response> {
    let expires_in_days = match input.expires_in_days.trim() {
        "" => None,
        days => Some(
            days.parse()
                .map_err(|_| AppError::bad_request("choose when the token expires"))?,
        ),
    };
    let new = NewToken {
        name: &input.name,
        scope: &input.scope,
        expires_in_days,
    };
    match tokens::create(&state, &ctx.user, new).await {
        Ok((_, secret)) => {
            let notice = Some("Token made.");
            let mut page = ProfilePage::load(&state, ctx, &session, Errors::new(), notice).await?;
            page.new_token = Some(secret);
            let mut response = render(&page)?.into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(response)
        }
        Err(AppError::Unprocessable { loc, .. }) if loc.last().is_some_and(|l| l == "name") => {
            let errors = Errors::from([("name", "give the token a name of 1 to 50 characters")]);
            let page = ProfilePage::load(&state, ctx, &session, errors, None).await?;
            Ok(unprocessable(render(&page)?))
        }
        Err(AppError::Unprocessable { msg, .. }) => Err(AppError::BadRequest(msg)),
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
struct RevokeTokenInput {
    token_id: i32,
}

async fn revoke_token(
    State(state): State<AppState>,
    ctx: Ctx,
    Form(input): Form<RevokeTokenInput>,
) -> AppResult<Response> {
    if !api_tokens::revoke(&state.db, ctx.user.user_id, input.token_id).await? {
        return Err(AppError::not_found("That token is already revoked."));
    }
    Ok(redirect(ctx.htmx, "/profile"))
}

/// "Download my data": the JSON file of `store::account_data::export`.
async fn export(State(state): State<AppState>, ctx: Ctx) -> AppResult<Response> {
    let data = account_data::export(&state.db, &ctx.user).await?;
    let body = serde_json::to_vec_pretty(&data).map_err(anyhow::Error::from)?;
    let disposition = format!(
        "attachment; filename=\"messenger-{}.json\"",
        ctx.user.username
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
struct DeleteInput {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

async fn delete_account(
    State(state): State<AppState>,
    ctx: Ctx,
    session: Session,
    ClientIp(ip): ClientIp,
    Form(input): Form<DeleteInput>,
) -> AppResult<Response> {
    if input.confirm != "yes" {
        let errors = Errors::from([("confirm", "tick the box to confirm")]);
        let page = ProfilePage::load(&state, ctx, &session, errors, None).await?;
        return Ok(unprocessable(render(&page)?));
    }
    match accounts::delete_account(&state, ip, &ctx.user, &input.password).await? {
        Ok(()) => {
            end_session(&session).await?;
            Ok(redirect(ctx.htmx, "/login?done=deleted"))
        }
        Err(e) => {
            let errors = Errors::from([(e.field, e.message)]);
            let page = ProfilePage::load(&state, ctx, &session, errors, None).await?;
            Ok(unprocessable(render(&page)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::browser_name;

    #[test]
    fn browsers_get_short_names() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(browser_name(Some(firefox)), "Firefox on Linux");
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
        assert_eq!(browser_name(Some(chrome)), "Chrome on Windows");
        assert_eq!(browser_name(None), "Unknown browser");
        assert_eq!(browser_name(Some("curl/8.5")), "curl/8.5");
    }
}
