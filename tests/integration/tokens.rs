//! Personal API tokens: made on the profile (or through the API with a password sign-in),
//! shown once, stored hashed, read-only or read-write, expiring, revocable, last use
//! shown; accepted as `Authorization: Bearer` beside the JWTs, which a password change
//! revokes.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{both_backends, helpers::*};

/// The token the profile shows once, right after it was made.
fn shown_token(html: &str) -> String {
    let at = html
        .find(r#"id="new-token""#)
        .expect("the new token is shown");
    let rest = &html[at..];
    let start = rest.find(r#"value=""#).unwrap() + 7;
    rest[start..start + rest[start..].find('"').unwrap()].to_string()
}

async fn make_token(app: &TestApp, jwt: &str, name: &str, scope: &str) -> (i64, String) {
    let r = app
        .post_json(
            jwt,
            "/api/tokens",
            &json!({ "name": name, "scope": scope, "expires_in_days": 30 }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    (
        body["token_id"].as_i64().unwrap(),
        body["token"].as_str().unwrap().to_string(),
    )
}

both_backends! {
    async fn a_token_made_on_the_profile_is_shown_once_and_works_as_a_bearer(app) {
        let friend = app.user("tokenfriend").await;
        let browser = app.browser();
        browser.sign_up("scripter").await;
        let r = browser.post_form("/profile", "/profile/tokens", &[("name", "backup script"), ("scope", "read"), ("expires_in_days", "30")]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let html = r.text().await.unwrap();
        let token = shown_token(&html);
        assert!(token.starts_with("mpat_") && token.len() > 60, "{token}");
        // Shown once: the profile does not show it again, and only its hash is stored.
        let again = browser.get_html("/profile").await;
        assert!(!again.contains(&token));
        assert!(again.contains("backup script") && again.contains("read only") && again.contains("never used"));
        let stored: i64 = match &app.db {
            messenger::db::Db::MySql(pool) => sqlx::query_scalar("SELECT COUNT(*) FROM api_token WHERE token_hash = ?").bind(&token).fetch_one(pool).await.unwrap(),
            messenger::db::Db::Sqlite(pool) => sqlx::query_scalar("SELECT COUNT(*) FROM api_token WHERE token_hash = ?").bind(&token).fetch_one(pool).await.unwrap(),
        };
        assert_eq!(stored, 0);
        // It reads, as a bearer token beside the JWTs; the profile then shows its last use.
        let me: Value = app.get(&token, "/api/users/").await.json().await.unwrap();
        assert_eq!(me["username"], "scripter");
        assert_eq!(app.get(&token, "/api/friends/?limit=5").await.status(), StatusCode::OK);
        assert!(browser.get_html("/profile").await.contains("last used "));
        // Read-only: any write is 403, and changes nothing.
        let r = app.post(&token, &format!("/api/friends/requests?username={}", friend.username)).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.json::<Value>().await.unwrap()["detail"].as_str().unwrap().contains("read-only"));
        assert_eq!(app.count("friendship").await, 0);
        let r = app.send_dm(&ApiUser { id: 0, username: "scripter".into(), email: String::new(), token: token.clone() }, &friend, "hi").await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        // A read-only token may still open the event stream (a ticket is for reading).
        let r = app.post(&token, "/api/auth/socket-ticket").await;
        assert_eq!(r.status(), StatusCode::CREATED);
        // Revoked from the profile: refused at once.
        let id = again.split(r#"name="token_id" value=""#).nth(1).unwrap().split('"').next().unwrap().to_string();
        let r = browser.post_form("/profile", "/profile/tokens/revoke", &[("token_id", &id)]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let r = app.get(&token, "/api/users/").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }

    async fn tokens_through_the_api_read_write_scope_expiry_and_revocation(app) {
        let me = app.user("automator").await;
        let friend = app.user("autofriend").await;
        let (rw_id, rw) = make_token(&app, &me.token, "bot", "read_write").await;
        let (_, ro) = make_token(&app, &me.token, "dashboard", "read").await;
        // A read-write token writes.
        let r = app.post(&rw, &format!("/api/friends/requests?username={}", friend.username)).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        // Tokens are managed with a password sign-in (or a session), never with a token.
        assert_eq!(app.get(&rw, "/api/tokens").await.status(), StatusCode::FORBIDDEN);
        let r = app.post_json(&rw, "/api/tokens", &json!({ "name": "more", "scope": "read_write" })).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let list: Value = app.get(&me.token, "/api/tokens").await.json().await.unwrap();
        let names: Vec<&str> = list.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["dashboard", "bot"]);
        assert!(list.as_array().unwrap().iter().all(|t| t.get("token").is_none() && t.get("token_hash").is_none()));
        assert!(list[1]["last_used_date_time"].is_string(), "the bot was used: {list}");
        assert!(list[0]["expires_date_time"].is_string());
        // Bad input.
        for body in [json!({ "name": "", "scope": "read" }), json!({ "name": "x", "scope": "admin" }), json!({ "name": "x", "scope": "read", "expires_in_days": 0 })] {
            let r = app.post_json(&me.token, "/api/tokens", &body).await;
            assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        }
        // Expired: refused.
        match &app.db {
            messenger::db::Db::MySql(pool) => { sqlx::query("UPDATE api_token SET expires_date_time = created_date_time WHERE name = 'dashboard'").execute(pool).await.unwrap(); }
            messenger::db::Db::Sqlite(pool) => { sqlx::query("UPDATE api_token SET expires_date_time = created_date_time WHERE name = 'dashboard'").execute(pool).await.unwrap(); }
        }
        assert_eq!(app.get(&ro, "/api/users/").await.status(), StatusCode::UNAUTHORIZED);
        // Revoked: refused; revoking again is 404, and nobody revokes someone else's.
        assert_eq!(app.delete(&friend.token, &format!("/api/tokens/{rw_id}")).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(app.delete(&me.token, &format!("/api/tokens/{rw_id}")).await.status(), StatusCode::OK);
        assert_eq!(app.get(&rw, "/api/users/").await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.delete(&me.token, &format!("/api/tokens/{rw_id}")).await.status(), StatusCode::NOT_FOUND);
        // A made-up token of the right shape is simply invalid.
        assert_eq!(app.get(&format!("mpat_{}", "0".repeat(64)), "/api/users/").await.status(), StatusCode::UNAUTHORIZED);
    }

    async fn a_password_change_revokes_access_tokens_but_keeps_personal_ones(app) {
        let api = app.user("rotator").await;
        let (_, personal) = make_token(&app, &api.token, "sync", "read").await;
        let ticket = app.post(&api.token, "/api/auth/socket-ticket").await.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
        let claims: Value = {
            let payload = api.token.split('.').nth(1).unwrap();
            let padded = format!("{payload}{}", "=".repeat((4 - payload.len() % 4) % 4));
            let bytes = base64_decode(&padded.replace('-', "+").replace('_', "/"));
            serde_json::from_slice(&bytes).unwrap()
        };
        assert!(claims["iat"].is_i64() && claims["fp"].is_string(), "{claims}");
        // `user_id` as a string, as the original wrote it.
        assert!(claims["user_id"].as_str() == Some(api.id.to_string().as_str()) && claims["username"] == "rotator" && claims["email"] == "rotator@example.com", "{claims}");
        let browser = app.browser();
        browser.sign_in("rotator", PASSWORD).await;
        let r = browser.post_form("/profile", "/profile/password", &[("current_password", PASSWORD), ("new_password", "Rotated123"), ("new_password_again", "Rotated123")]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(app.get(&api.token, "/api/users/").await.status(), StatusCode::UNAUTHORIZED, "the JWT from before is revoked");
        // The hot path (sending, history) checks it too, without a user lookup of its own.
        assert_eq!(app.get(&api.token, "/api/messages/?friend_username=rotator&limit=5").await.status(), StatusCode::UNAUTHORIZED);
        let r = app.api.get(app.url(&format!("/api/events?access_token={ticket}"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.get(&personal, "/api/users/").await.status(), StatusCode::OK, "personal tokens survive a password change");
        let fresh = app.sign_in_raw("rotator@example.com", "Rotated123").await.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
        assert_eq!(app.get(&fresh, "/api/users/").await.status(), StatusCode::OK);
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut bits, mut n, mut out) = (0u32, 0, Vec::new());
    for c in s.bytes().filter(|&c| c != b'=') {
        bits = (bits << 6) | alphabet.iter().position(|&a| a == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}
