//! Accounts: the API's auth contract, the pages' sign-up/sign-in/sign-out, sessions,
//! CSRF, brute-force limits, password hashes and tokens.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::{both_backends, helpers::*, integration_test};

async fn detail(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    (status, r.json::<Value>().await.unwrap_or(Value::Null))
}

both_backends! {
    async fn sign_up_follows_the_originals_rules_and_texts(app) {
        app.user("taken_name").await;
        let cases = [
            ("newuser", "not an email", "Password231", "invalid email"),
            ("newuser", "taken_name@example.com", "Password231", "account already exists"),
            ("newuser", "TAKEN_NAME@EXAMPLE.COM", "Password231", "account already exists"),
            ("_invalid", "fresh@example.com", "Password231", "invalid username"),
            ("taken_name", "fresh@example.com", "Password231", "username is taken"),
            ("Taken_Name", "fresh@example.com", "Password231", "username is taken"),
            ("newuser", "fresh@example.com", "noNumbers", "invalid password"),
            // Checked in the original's order: the email comes first.
            ("_invalid", "@email.com", "short", "invalid email"),
        ];
        for (username, email, password, expected) in cases {
            let (status, body) = detail(app.sign_up_raw(username, email, password).await).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{username} {email} {password}");
            assert_eq!(body["detail"], expected, "{username} {email} {password}");
        }
        assert_eq!(app.count("user").await, 1, "nothing was stored by the refused sign-ups");
        for username in ["valid_username.23", "vAli", "hello.world", "223221", "USERNAME", "hie"] {
            let r = app.sign_up_raw(username, &format!("{}@example.com", username.replace('.', "_")), "eloWor1d").await;
            assert_eq!(r.status(), StatusCode::CREATED, "{username}");
        }
    }

    async fn sign_in_gives_a_token_with_the_originals_claims(app) {
        let user = app.user("claims").await;
        let (status, body) = detail(app.sign_in_raw("claims@example.com", PASSWORD).await).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body["token_type"], "bearer");
        let token = body["access_token"].as_str().unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(&base64url(payload)).unwrap();
        // A string, as the original wrote it ("3").
        assert_eq!(claims["user_id"], user.id.to_string());
        assert_eq!(claims["username"], "claims");
        assert_eq!(claims["email"], "claims@example.com");
        let exp = claims["exp"].as_i64().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        assert!((exp - now - 1800).abs() < 60, "30 minutes: {}", exp - now);
        let me: Value = app.get(token, "/api/users/").await.json().await.unwrap();
        assert_eq!(me, serde_json::json!({
            "user_id": user.id, "username": "claims", "email": "claims@example.com",
            "first_name": null, "last_name": null, "birthdate": null
        }));
    }

    async fn unknown_email_and_wrong_password_fail_alike(app) {
        app.user("someone").await;
        let (s1, b1) = detail(app.sign_in_raw("someone@example.com", "Wrong1password").await).await;
        let (s2, b2) = detail(app.sign_in_raw("nobody@example.com", "Wrong1password").await).await;
        assert_eq!((s1, s2), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
        assert_eq!(b1, b2);
        assert_eq!(b1["detail"], "Could not validate credentials");
    }

    async fn bad_tokens_are_401_with_a_bearer_challenge(app) {
        let user = app.user("tokens").await;
        for token in ["", "garbage", &format!("{}x", user.token), &forge(user.id, "another-secret-0123456789", 3600), &forge(user.id, JWT_SECRET, -60)] {
            let r = app.get(token, "/api/users/").await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{token}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            assert_eq!(r.json::<Value>().await.unwrap()["detail"], "Could not validate credentials");
        }
        let r = app.api.get(app.url("/api/users/")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        // A token for a user that no longer exists.
        let r = app.get(&forge(999_999, JWT_SECRET, 3600), "/api/users/").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }

    async fn a_socket_ticket_opens_the_event_stream_and_nothing_else(app) {
        let user = app.user("ticketed").await;
        let r = app.api.post(app.url("/api/auth/socket-ticket"))
            .form(&[("grant_type", "password"), ("username", "ticketed@example.com"), ("password", PASSWORD)])
            .send().await.unwrap();
        let (status, body) = detail(r).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body["token_type"], "socketio");
        let ticket = body["access_token"].as_str().unwrap();
        let stream = app.api.get(app.url(&format!("/api/events?access_token={ticket}"))).send().await.unwrap();
        assert_eq!(stream.status(), StatusCode::OK);
        assert_eq!(stream.headers()["content-type"], "text/event-stream");
        drop(stream);
        assert_eq!(app.get(ticket, "/api/users/").await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.get(ticket, "/api/friends/?limit=5").await.status(), StatusCode::UNAUTHORIZED);
        // An access token is not a ticket.
        let r = app.api.get(app.url(&format!("/api/events?access_token={}", user.token))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }

    async fn the_eleventh_sign_in_in_a_minute_is_429_but_others_still_sign_in(app) {
        app.user("target").await;
        app.user("bystander").await;
        for i in 0..10 {
            let r = app.sign_in_raw("target@example.com", "Wrong1password").await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
        }
        let r = app.sign_in_raw("target@example.com", PASSWORD).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        let r = app.sign_in_raw("bystander@example.com", PASSWORD).await;
        assert_eq!(r.status(), StatusCode::CREATED, "another account is not locked out");
    }

    async fn pages_sign_up_sign_out_and_sign_in_with_sessions(app) {
        let browser = app.browser();
        let r = browser.sign_up("pageuser").await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&r), "/chats");
        let chats = browser.get_html("/chats").await;
        assert!(chats.contains("pageuser") && chats.contains("Sign out"));
        let r = browser.post_form("/chats", "/logout", &[]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let r = browser.get("/chats").await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&r), "/login?next=%2Fchats");
        let r = browser.sign_in("pageuser", "Wrong1password").await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = r.text().await.unwrap();
        assert!(html.contains("Incorrect email, username or password.") && html.contains(r#"value="pageuser""#));
        let r = browser.sign_in("PAGEUSER@example.com", PASSWORD).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(browser.get_html("/chats").await.contains("pageuser"));
    }

    async fn sign_in_returns_to_the_page_asked_for_but_only_local_ones(app) {
        app.user("wanderer").await;
        let browser = app.browser();
        let r = browser.post_form("/login?next=/friends", "/login", &[("login", "wanderer"), ("password", PASSWORD), ("next", "/friends")]).await;
        assert_eq!(location(&r), "/friends");
        for evil in ["https://evil.example/", "//evil.example/", "/\\evil.example"] {
            let browser = app.browser();
            let r = browser.post_form("/login", "/login", &[("login", "wanderer"), ("password", PASSWORD), ("next", evil)]).await;
            assert_eq!(location(&r), "/chats", "{evil}");
        }
    }

    async fn the_signup_form_shows_errors_by_the_field_and_keeps_input(app) {
        app.user("already").await;
        let browser = app.browser();
        let r = browser.post_form("/signup", "/signup", &[("username", "already"), ("email", "nope"), ("password", "weak"), ("password_again", "other")]).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = r.text().await.unwrap();
        for text in ["username is taken", "invalid email", "invalid password", "passwords do not match", r#"value="already""#, r#"value="nope""#] {
            assert!(html.contains(text), "missing {text}");
        }
        assert!(!html.contains(r#"value="weak""#), "passwords are not echoed");
        assert_eq!(app.count("user").await, 1);
    }

    async fn a_foreign_origin_or_a_missing_csrf_token_is_403_and_changes_nothing(app) {
        let browser = app.browser();
        browser.sign_up("csrfuser").await;
        let token = csrf_token(&browser.get_html("/profile").await);
        // No token.
        let r = browser.post_raw("/profile", &[("first_name", "Mallory")], &[]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        // A wrong token.
        let r = browser.post_raw("/profile", &[("first_name", "Mallory"), ("csrf_token", "0000")], &[]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        // The right token from another site.
        let r = browser.post_raw("/profile", &[("first_name", "Mallory"), ("csrf_token", &token)], &[("Origin", "https://evil.example")]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        // The session's own API calls need it too.
        let r = browser.client.post(format!("{}/api/friends/requests?username=csrfuser", browser.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let html = browser.get_html("/profile").await;
        assert!(!html.contains("Mallory"));
        // With the token and our own origin it works, in a header (htmx) or a field.
        let r = browser.post_raw("/profile", &[("first_name", "Alice")], &[("X-CSRF-Token", &token), ("Origin", &app.address)]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(browser.get_html("/profile").await.contains(r#"value="Alice""#));
    }

    async fn changing_the_password_signs_out_other_sessions(app) {
        let laptop = app.browser();
        laptop.sign_up("twodevices").await;
        let phone = app.browser();
        assert_eq!(phone.sign_in("twodevices", PASSWORD).await.status(), StatusCode::SEE_OTHER);
        let r = laptop.post_form("/profile", "/profile/password", &[("current_password", "Wrong1password"), ("new_password", "NewPassw0rd"), ("new_password_again", "NewPassw0rd")]).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().await.unwrap().contains("current password is wrong"));
        let r = laptop.post_form("/profile", "/profile/password", &[("current_password", PASSWORD), ("new_password", "NewPassw0rd"), ("new_password_again", "NewPassw0rd")]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(laptop.get("/chats").await.status(), StatusCode::OK, "this session stays");
        assert_eq!(phone.get("/chats").await.status(), StatusCode::SEE_OTHER, "the other is signed out");
        assert_eq!(app.sign_in_raw("twodevices@example.com", "NewPassw0rd").await.status(), StatusCode::CREATED);
    }

    async fn sign_out_deletes_the_session_on_the_server(app) {
        let browser = app.browser();
        browser.sign_up("leaver").await;
        let sessions_before = app.count("browser_session").await;
        browser.post_form("/chats", "/logout", &[]).await;
        assert!(app.count("browser_session").await < sessions_before);
    }

    async fn profile_edits_are_validated_and_saved(app) {
        let browser = app.browser();
        browser.sign_up("profiled").await;
        let r = browser.post_form("/profile", "/profile", &[("first_name", "Ada"), ("last_name", "Lovelace"), ("birthdate", "1815-12-10")]).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "before 1900 is refused");
        let r = browser.post_form("/profile", "/profile", &[("first_name", "Ada"), ("last_name", "Lovelace"), ("birthdate", "1990-12-10")]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let token = app.sign_in_raw("profiled@example.com", PASSWORD).await.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
        let me: Value = app.get(&token, "/api/users/").await.json().await.unwrap();
        assert_eq!((me["first_name"].as_str(), me["last_name"].as_str(), me["birthdate"].as_str()), (Some("Ada"), Some("Lovelace"), Some("1990-12-10")));
    }
}

integration_test! {
    /// The original's hashes verify, and a weaker one is upgraded at sign-in: with the
    /// production parameters (m=64 MiB, t=3, p=4), as the default configuration has them.
    async fn original_hashes_sign_in_and_weak_ones_are_upgraded_on_production_parameters() {
        let app = spawn_app_with(
            Backend::Sqlite,
            &[
                ("ARGON2_MEMORY_KIB", "65536"),
                ("ARGON2_ITERATIONS", "3"),
                ("ARGON2_PARALLELISM", "4"),
            ],
        )
        .await;
        let weak = "$argon2id$v=19$m=19456,t=2,p=1$N8CPJhs2Khip11zBDWZBvw$rMmJKFvHJibY1387+ZEIeysddhZqQiF7EFri3meiBcE";
        let strong = "$argon2id$v=19$m=65536,t=3,p=4$kJBP50st1vzVNskDs2zuoQ$Cm+XDBekCFiM0gjq0REmYRdx7TOoFijKamtDfaLvUxk";
        let messenger::db::Db::Sqlite(pool) = &app.db else {
            unreachable!()
        };
        for (name, hash) in [("weakhash", weak), ("stronghash", strong)] {
            sqlx::query("INSERT INTO user (username, email, password_hash) VALUES (?, ?, ?)")
                .bind(name)
                .bind(format!("{name}@example.com"))
                .bind(hash)
                .execute(pool)
                .await
                .unwrap();
        }
        for name in ["weakhash", "stronghash"] {
            let r = app
                .sign_in_raw(&format!("{name}@example.com"), "Password231")
                .await;
            assert_eq!(r.status(), StatusCode::CREATED, "{name}");
        }
        let stored = |name: &'static str| async move {
            sqlx::query_scalar::<_, String>("SELECT password_hash FROM user WHERE username = ?")
                .bind(name)
                .fetch_one(pool)
                .await
                .unwrap()
        };
        let upgraded = stored("weakhash").await;
        assert!(
            upgraded.starts_with("$argon2id$v=19$m=65536,t=3,p=4$"),
            "{upgraded}"
        );
        assert_eq!(
            stored("stronghash").await,
            strong,
            "a hash as strong as ours is kept"
        );
        assert_eq!(
            app.sign_in_raw("weakhash@example.com", "Password231")
                .await
                .status(),
            StatusCode::CREATED
        );
    }

    async fn the_previous_jwt_secret_is_accepted_during_a_rotation() {
        let database = std::sync::Arc::new(new_database(Backend::Sqlite).await);
        let old = spawn_app_on(
            database.clone(),
            &[("JWT_SECRET", "the-old-secret-0123456789")],
        )
        .await;
        let user = old.user("rotated").await;
        let rotated = spawn_app_on(
            database.clone(),
            &[
                ("JWT_SECRET", "the-new-secret-0123456789"),
                ("JWT_SECRET_PREVIOUS", "the-old-secret-0123456789"),
            ],
        )
        .await;
        assert_eq!(
            rotated.get(&user.token, "/api/users/").await.status(),
            StatusCode::OK
        );
        let after = spawn_app_on(database, &[("JWT_SECRET", "the-new-secret-0123456789")]).await;
        assert_eq!(
            after.get(&user.token, "/api/users/").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }

    /// argon2 runs off the async runtime: while sign-ins hash, other requests are served.
    async fn health_stays_fast_while_sign_ins_hash() {
        let app = spawn_app_with(
            Backend::Sqlite,
            &[
                ("ARGON2_MEMORY_KIB", "65536"),
                ("ARGON2_ITERATIONS", "3"),
                ("ARGON2_PARALLELISM", "4"),
                ("LOGIN_ATTEMPTS_PER_MINUTE", "1000"),
            ],
        )
        .await;
        app.sign_up_raw("burst", "burst@example.com", PASSWORD)
            .await;
        let mut sign_ins = Vec::new();
        for _ in 0..8 {
            let client = app.api.clone();
            let url = app.url("/api/auth/sign-in");
            sign_ins.push(tokio::spawn(async move {
                client
                    .post(url)
                    .form(&[("username", "burst@example.com"), ("password", PASSWORD)])
                    .send()
                    .await
                    .unwrap()
                    .status()
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut slowest = Duration::ZERO;
        for _ in 0..10 {
            let started = std::time::Instant::now();
            assert_eq!(
                app.api
                    .get(app.url("/health"))
                    .send()
                    .await
                    .unwrap()
                    .status(),
                StatusCode::OK
            );
            slowest = slowest.max(started.elapsed());
        }
        for s in sign_ins {
            assert_eq!(s.await.unwrap(), StatusCode::CREATED);
        }
        // Generous: this asserts "not blocked behind the hashes" (which would take seconds), not a latency target.
        assert!(
            slowest < Duration::from_millis(500),
            "health took {slowest:?} during hashing"
        );
    }
}

fn base64url(s: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = alphabet.iter().position(|&a| a == c).unwrap() as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

/// A token signed with `secret`, expiring `expires_in` seconds from now.
fn forge(user_id: i64, secret: &str, expires_in: i64) -> String {
    let keys = messenger::auth::jwt::JwtKeys::new(&messenger::config::Secret::new(secret), None);
    let token = keys.issue(
        user_id,
        "forged",
        "forged@example.com",
        messenger::auth::jwt::TokenKind::Access,
    );
    if expires_in >= 0 {
        return token;
    }
    // Re-sign with an expiry in the past.
    use jsonwebtoken::{encode, EncodingKey, Header};
    let claims = serde_json::json!({
        "user_id": user_id, "username": "forged", "email": "forged@example.com",
        "exp": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + expires_in
    });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}
