//! Sign-up, sign-in, sign-out and the profile page.

use std::collections::HashMap;

use askama::Template;
use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Form, Router,
};
use serde::Deserialize;
use tower_sessions::Session;

use super::{redirect, render, AnonCtx, Ctx, Layout};
use crate::{
    accounts::{self, FieldError},
    auth::{end_session, extract::safe_next, start_session, ClientIp},
    error::AppResult,
    state::AppState,
    store::users::{self, ProfileUpdate},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/signup", get(signup_page).post(signup))
        .route("/logout", post(logout))
        .route("/profile", get(profile_page).post(update_profile))
        .route("/profile/password", post(change_password))
}

type Errors = HashMap<&'static str, &'static str>;

fn errors_of(list: &[FieldError]) -> Errors {
    let mut map = HashMap::new();
    for e in list {
        map.entry(e.field).or_insert(e.message);
    }
    map
}

#[derive(Template)]
#[template(path = "pages/login.html")]
struct LoginPage {
    layout: Layout,
    login: String,
    next: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/login.html", block = "form")]
struct LoginForm {
    layout: Layout,
    login: String,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_page(ctx: AnonCtx, Query(q): Query<NextQuery>) -> AppResult<Response> {
    if ctx.signed_in {
        return Ok(redirect(false, &safe_next(q.next.as_deref())));
    }
    Ok(render(&LoginPage {
        layout: ctx.layout,
        login: String::new(),
        next: safe_next(q.next.as_deref()),
        error: None,
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
    Form(input): Form<LoginInput>,
) -> AppResult<Response> {
    let next = safe_next(input.next.as_deref());
    match accounts::sign_in(&state, ip, &input.login, &input.password).await? {
        Some(user) => {
            start_session(&session, &user).await?;
            Ok(redirect(ctx.htmx, &next))
        }
        None => {
            let error = Some("Incorrect email, username or password.".to_string());
            let (layout, login) = (ctx.layout, input.login);
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
                })?
            };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
        }
    }
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

async fn signup(
    State(state): State<AppState>,
    ctx: AnonCtx,
    session: Session,
    ClientIp(ip): ClientIp,
    Form(input): Form<SignupInput>,
) -> AppResult<Response> {
    let mut errors =
        match accounts::check_sign_up(&state, &input.username, &input.email, &input.password).await
        {
            Ok(_) => Errors::new(),
            Err(list) => errors_of(&list),
        };
    if input.password != input.password_again {
        errors
            .entry("password_again")
            .or_insert("passwords do not match");
    }
    if errors.is_empty() {
        match accounts::sign_up(&state, ip, &input.username, &input.email, &input.password).await? {
            Ok(user) => {
                start_session(&session, &user).await?;
                return Ok(redirect(ctx.htmx, "/chats"));
            }
            Err(list) => errors = errors_of(&list),
        }
    }
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
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}

async fn logout(session: Session, parts: axum::http::HeaderMap) -> AppResult<Response> {
    end_session(&session).await?;
    Ok(redirect(super::is_htmx(&parts), "/login"))
}

#[derive(Template)]
#[template(path = "pages/profile.html")]
struct ProfilePage {
    layout: Layout,
    username: String,
    email: String,
    first_name: String,
    last_name: String,
    birthdate: String,
    errors: Errors,
    notice: Option<&'static str>,
}

impl ProfilePage {
    fn new(ctx: Ctx, errors: Errors, notice: Option<&'static str>) -> Self {
        let mut layout = ctx.layout;
        layout.section = "profile";
        let u = ctx.user;
        Self {
            layout,
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
        }
    }
}

async fn profile_page(ctx: Ctx) -> AppResult<Response> {
    Ok(render(&ProfilePage::new(ctx, Errors::new(), None))?.into_response())
}

#[derive(Deserialize)]
struct ProfileInput {
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    birthdate: String,
}

fn optional_name(raw: &str, field: &'static str, errors: &mut Errors) -> Option<String> {
    let trimmed = raw.trim();
    if trimmed.chars().count() > 30 {
        errors.insert(field, "at most 30 characters");
        return None;
    }
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

async fn update_profile(
    State(state): State<AppState>,
    mut ctx: Ctx,
    Form(input): Form<ProfileInput>,
) -> AppResult<Response> {
    let mut errors = Errors::new();
    let first_name = optional_name(&input.first_name, "first_name", &mut errors);
    let last_name = optional_name(&input.last_name, "last_name", &mut errors);
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
        ctx.user.first_name = Some(input.first_name);
        ctx.user.last_name = Some(input.last_name);
        let mut page = ProfilePage::new(ctx, errors, None);
        page.birthdate = input.birthdate;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response());
    }
    let update = ProfileUpdate {
        first_name,
        last_name,
        birthdate,
    };
    users::update_profile(&state.db, ctx.user.user_id, &update).await?;
    ctx.user.first_name = update.first_name;
    ctx.user.last_name = update.last_name;
    ctx.user.birthdate = update
        .birthdate
        .map(|d| time::PrimitiveDateTime::new(d, time::Time::MIDNIGHT));
    Ok(render(&ProfilePage::new(
        ctx,
        Errors::new(),
        Some("Profile saved."),
    ))?
    .into_response())
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

/// Changes the password and signs out every other session (their fingerprint no longer
/// matches); this one gets a fresh session id.
async fn change_password(
    State(state): State<AppState>,
    mut ctx: Ctx,
    session: Session,
    Form(input): Form<PasswordInput>,
) -> AppResult<Response> {
    if input.new_password != input.new_password_again {
        let errors = Errors::from([("new_password_again", "passwords do not match")]);
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            render(&ProfilePage::new(ctx, errors, None))?,
        )
            .into_response());
    }
    match accounts::change_password(
        &state,
        &ctx.user,
        &input.current_password,
        &input.new_password,
    )
    .await?
    {
        Ok(user) => {
            start_session(&session, &user).await?;
            ctx.user = user;
            ctx.layout.csrf = crate::auth::csrf_token(&session).await?;
            Ok(render(&ProfilePage::new(
                ctx,
                Errors::new(),
                Some("Password changed. Other sessions were signed out."),
            ))?
            .into_response())
        }
        Err(e) => {
            let errors = Errors::from([(e.field, e.message)]);
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                render(&ProfilePage::new(ctx, errors, None))?,
            )
                .into_response())
        }
    }
}
