//! Sessions you can see: the profile lists signed-in browsers and signs any of them out;
//! sessions slide while used and end after 14 idle days; anonymous pages write no
//! session and carry a stateless CSRF token.

use reqwest::StatusCode;
use serde_json::Value;

use crate::{both_backends, helpers::*};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";

/// A cookie-keeping client with a user agent, as a real browser has.
fn browser_as(app: &TestApp, user_agent: &str) -> PageClient {
    PageClient {
        client: reqwest::Client::builder()
            .cookie_store(true)
            .user_agent(user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: app.address.clone(),
    }
}

/// The `session` fields of the profile's "sign out" forms, in page order.
fn session_keys(html: &str) -> Vec<String> {
    html.split(r#"name="session" value=""#)
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_string())
        .collect()
}

async fn sql_i64(app: &TestApp, sql: &str) -> i64 {
    match &app.db {
        messenger::db::Db::MySql(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        messenger::db::Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    }
}

/// Moves every session's "seen" mark, last use and expiry `seconds` into the past, as if
/// that much time had gone by without a request.
async fn age_sessions(app: &TestApp, seconds: i64) {
    let rows: Vec<(String, String)> = match &app.db {
        messenger::db::Db::MySql(pool) => {
            sqlx::query_as("SELECT session_key, data FROM browser_session")
                .fetch_all(pool)
                .await
                .unwrap()
        }
        messenger::db::Db::Sqlite(pool) => {
            sqlx::query_as("SELECT session_key, data FROM browser_session")
                .fetch_all(pool)
                .await
                .unwrap()
        }
    };
    for (key, data) in rows {
        let mut data: Value = serde_json::from_str(&data).unwrap();
        let at = data["seen"]["at"].as_i64().unwrap();
        data["seen"]["at"] = (at - seconds).into();
        let shift = time::Duration::seconds(seconds);
        let sql = "UPDATE browser_session SET data = ?, last_seen_date_time = last_seen_date_time, expiry_date_time = ? WHERE session_key = ?";
        let expiry = messenger::db::now() + time::Duration::days(14) - shift;
        match &app.db {
            messenger::db::Db::MySql(pool) => {
                sqlx::query(sql)
                    .bind(data.to_string())
                    .bind(expiry)
                    .bind(&key)
                    .execute(pool)
                    .await
                    .unwrap();
            }
            messenger::db::Db::Sqlite(pool) => {
                sqlx::query(sql)
                    .bind(data.to_string())
                    .bind(expiry)
                    .bind(&key)
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
    }
}

/// When the only session expires, as a time the database compares.
async fn expiry(app: &TestApp) -> time::PrimitiveDateTime {
    let sql = "SELECT expiry_date_time FROM browser_session";
    match &app.db {
        messenger::db::Db::MySql(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        messenger::db::Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    }
}

both_backends! {
    async fn the_profile_lists_signed_in_browsers_and_signs_out_any_one(app) {
        app.user("traveller").await;
        let laptop = browser_as(&app, FIREFOX);
        assert_eq!(laptop.sign_in("traveller", PASSWORD).await.status(), StatusCode::SEE_OTHER);
        let phone = browser_as(&app, CHROME);
        assert_eq!(phone.sign_in("traveller", PASSWORD).await.status(), StatusCode::SEE_OTHER);
        let html = laptop.get_html("/profile").await;
        assert!(html.contains("Firefox on Linux") && html.contains("Chrome on Windows"), "{html}");
        assert!(html.contains("this browser") && html.contains("127.0.0.1"));
        assert!(html.contains("Signed in ") && html.contains("last seen "));
        // Only the other session has a "sign out" button; it signs that browser out.
        let keys = session_keys(&html);
        assert_eq!(keys.len(), 1, "{html}");
        let r = laptop.post_form("/profile", "/profile/sessions/revoke", &[("session", &keys[0])]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(phone.get("/chats").await.status(), StatusCode::SEE_OTHER, "the phone is signed out");
        assert_eq!(laptop.get("/chats").await.status(), StatusCode::OK, "the laptop is not");
        // Someone else's (or an unknown) session cannot be named.
        let r = laptop.post_form("/profile", "/profile/sessions/revoke", &[("session", &keys[0])]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    }

    async fn signing_out_everywhere_else_ends_other_sessions_and_access_tokens(app) {
        let user = app.user("careful").await;
        let laptop = browser_as(&app, FIREFOX);
        laptop.sign_in("careful", PASSWORD).await;
        let phone = browser_as(&app, CHROME);
        phone.sign_in("careful", PASSWORD).await;
        let r = app.post_json(&user.token, "/api/tokens", &serde_json::json!({ "name": "cron", "scope": "read" })).await;
        let personal = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
        let r = laptop.post_form("/profile", "/profile/sessions/revoke-others", &[]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let html = r.text().await.unwrap();
        assert!(html.contains("Signed out everywhere else"));
        assert!(session_keys(&html).is_empty(), "only this browser is left");
        assert_eq!(phone.get("/chats").await.status(), StatusCode::SEE_OTHER);
        assert_eq!(laptop.get("/chats").await.status(), StatusCode::OK);
        assert_eq!(app.get(&user.token, "/api/users/").await.status(), StatusCode::UNAUTHORIZED, "the JWT is revoked");
        assert_eq!(app.get(&personal, "/api/users/").await.status(), StatusCode::OK, "personal tokens stay");
        // The API's own: every session and access token, this one too.
        let token = app.sign_in_raw("careful@example.com", PASSWORD).await.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
        let ticket = app.post(&token, "/api/auth/socket-ticket").await.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
        assert_eq!(app.post(&token, "/api/auth/sign-out-everywhere").await.status(), StatusCode::OK);
        assert_eq!(app.get(&token, "/api/users/").await.status(), StatusCode::UNAUTHORIZED);
        let r = app.api.get(app.url(&format!("/api/events?access_token={ticket}"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "event tickets too");
        assert_eq!(laptop.get("/chats").await.status(), StatusCode::SEE_OTHER);
        assert_eq!(app.count("browser_session").await, 0);
    }

    async fn anonymous_pages_write_no_session_and_their_forms_carry_a_stateless_token(app) {
        app.user("visited").await;
        for _ in 0..3 {
            let visitor = app.browser();
            for page in ["/login", "/signup", "/password/forgot", "/login?next=/friends"] {
                visitor.get_html(page).await;
            }
            let r = visitor.sign_in("visited", "Wrong1password").await;
            assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        }
        assert_eq!(app.count("browser_session").await, 0, "nobody signed in, nothing written");
        // The token is bound to the visitor's nonce cookie: without the cookie, or with
        // another visitor's token, the form is refused.
        let alice = app.browser();
        let alice_token = csrf_token(&alice.get_html("/login").await);
        let mallory = app.browser();
        let mallory_token = csrf_token(&mallory.get_html("/login").await);
        assert_ne!(alice_token, mallory_token);
        let form = |token: &str| vec![("login", "visited".to_string()), ("password", PASSWORD.to_string()), ("csrf_token", token.to_string())];
        let r = alice.client.post(format!("{}/login", alice.base)).form(&form(&mallory_token)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let cookieless = app.browser();
        let r = cookieless.client.post(format!("{}/login", cookieless.base)).form(&form(&alice_token)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = alice.client.post(format!("{}/login", alice.base)).form(&[("login", "visited"), ("password", PASSWORD)]).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "no token at all");
        let r = alice.client.post(format!("{}/login", alice.base)).form(&form(&alice_token)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(app.count("browser_session").await, 1, "the sign-in is the first write");
        // The API's password sign-in needs no token (no cookie is involved).
        assert_eq!(app.sign_in_raw("visited@example.com", PASSWORD).await.status(), StatusCode::CREATED);
        // A browser whose session was signed out elsewhere can still sign in again.
        let stale = app.browser();
        stale.sign_in("visited", PASSWORD).await;
        let keys_before = app.count("browser_session").await;
        match &app.db {
            messenger::db::Db::MySql(pool) => { sqlx::query("DELETE FROM browser_session").execute(pool).await.unwrap(); }
            messenger::db::Db::Sqlite(pool) => { sqlx::query("DELETE FROM browser_session").execute(pool).await.unwrap(); }
        }
        assert!(keys_before >= 2);
        assert_eq!(stale.sign_in("visited", PASSWORD).await.status(), StatusCode::SEE_OTHER);
    }

    async fn an_active_session_slides_and_an_idle_one_expires(app) {
        let browser = app.browser();
        browser.sign_up("regular").await;
        let first = expiry(&app).await;
        // Within a few minutes nothing is written: no new cookie, the same expiry.
        let r = browser.get("/chats").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().get("set-cookie").is_none(), "no write per request");
        assert_eq!(expiry(&app).await, first);
        // Ten minutes later (the row aged): the next request renews it for 14 days.
        age_sessions(&app, 600).await;
        let aged = expiry(&app).await;
        let r = browser.get("/chats").await;
        assert_eq!(r.status(), StatusCode::OK);
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(cookie.starts_with("messenger_session=") && cookie.contains("Max-Age="), "{cookie}");
        let renewed = expiry(&app).await;
        assert!(renewed - aged >= time::Duration::minutes(9), "{aged} -> {renewed}");
        assert!(renewed > messenger::db::now() + time::Duration::days(13));
        let seen = sql_i64(&app, "SELECT COUNT(*) FROM browser_session WHERE last_seen_date_time > created_date_time").await;
        assert_eq!(seen, 1, "last seen moved on");
        // Fourteen idle days: signed out.
        age_sessions(&app, 14 * 24 * 3600 + 60).await;
        let r = browser.get("/chats").await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(location(&r).starts_with("/login"));
    }
}
