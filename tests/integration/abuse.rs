//! Abuse and security findings of issue 13, each with the test that would have caught it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{both_backends, helpers::*, integration_test};

/// A signed-in browser's page form posted with extra headers.
async fn post_with_headers(
    browser: &PageClient,
    token_page: &str,
    path: &str,
    fields: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let token = csrf_token(&browser.get_html(token_page).await);
    let mut form = fields.to_vec();
    form.push(("csrf_token", &token));
    browser.post_raw(path, &form, headers).await
}

fn content_type(r: &reqwest::Response) -> String {
    r.headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    match &app.db {
        messenger::db::Db::MySql(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        messenger::db::Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    }
}

both_backends! {
    async fn after_sign_in_next_never_leaves_the_site_and_never_fails(app) {
        let app = spawn_app_on(app.database.clone(), &[("LOGIN_ATTEMPTS_PER_MINUTE", "1000")]).await;
        app.user("redirected").await;
        // Browsers drop tabs and line breaks in URLs and read "\" as "/": each of these
        // is //evil.example to them. A control character cannot even be a header.
        for evil in ["/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "/\\/evil.example", "/ /evil.example", "/\u{1}", "/chats\u{7f}", "/\u{85}x"] {
            let browser = app.browser();
            let r = browser.post_form("/login", "/login", &[("login", "redirected"), ("password", PASSWORD), ("next", evil)]).await;
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "{evil:?}");
            assert_eq!(location(&r), "/chats", "{evil:?}");
            // htmx gets the same place in HX-Redirect.
            let browser = app.browser();
            let r = post_with_headers(&browser, "/login", "/login", &[("login", "redirected"), ("password", PASSWORD), ("next", evil)], &[("HX-Request", "true")]).await;
            assert_eq!(r.status(), StatusCode::NO_CONTENT, "{evil:?}");
            assert_eq!(r.headers()["hx-redirect"], "/chats", "{evil:?}");
        }
        // Already signed in, /login?next=… redirects at once: the same rule.
        let browser = app.browser();
        browser.sign_in("redirected", PASSWORD).await;
        let r = browser.get("/login?next=/%09/evil.example").await;
        assert_eq!(location(&r), "/chats");
        let r = browser.get("/login?next=/friends").await;
        assert_eq!(location(&r), "/friends");
    }

    async fn the_signup_form_counts_every_attempt_before_answering(app) {
        let app = spawn_app_on(app.database.clone(), &[("SIGNUPS_PER_HOUR", "3"), ("TRUST_PROXY", "true")]).await;
        app.user("taken").await;
        let browser = app.browser();
        let attempt = || post_with_headers(&browser, "/signup", "/signup", &[("username", "taken"), ("email", "probe@example.com"), ("password", PASSWORD), ("password_again", PASSWORD)], &[("X-Forwarded-For", "203.0.113.9")]);
        for i in 0..3 {
            let r = attempt().await;
            assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "attempt {i}");
            assert!(r.text().await.unwrap().contains("username is taken"));
        }
        let r = attempt().await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "no more answers about who exists");
        assert!(r.headers().contains_key("retry-after"));
        let html = r.text().await.unwrap();
        assert!(!html.contains("username is taken") && html.contains("too many requests"), "{html}");
    }

    async fn typing_reports_and_friend_requests_are_limited_on_the_server(app) {
        let app = spawn_app_on(app.database.clone(), &[("FRIEND_REQUESTS_PER_HOUR", "2")]).await;
        let [a, b, c, d] = [app.user("typist").await, app.user("reader").await, app.user("third").await, app.user("fourth").await];
        app.befriend(&a, &b).await;
        let typing = json!({ "friend_username": "reader" });
        for i in 0..30 {
            let r = app.post_json(&a.token, "/api/typing", &typing).await;
            assert_eq!(r.status(), StatusCode::NO_CONTENT, "report {i}");
        }
        let r = app.post_json(&a.token, "/api/typing", &typing).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(scalar(&app, "SELECT COUNT(*) FROM event WHERE kind = 'typing'").await, 30, "nothing written past the limit");
        // Friend requests: befriend above used one of two.
        let r = app.post(&a.token, &format!("/api/friends/requests?username={}", c.username)).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = app.post(&a.token, &format!("/api/friends/requests?username={}", d.username)).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let r = app.post(&b.token, &format!("/api/friends/requests?username={}", d.username)).await;
        assert_eq!(r.status(), StatusCode::CREATED, "per user");
    }

    async fn only_the_user_who_declined_can_clear_the_refusal(app) {
        let [asker, decliner] = [app.user("asker").await, app.user("decliner").await];
        let r = app.post(&asker.token, "/api/friends/requests?username=decliner").await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = app.post(&decliner.token, "/api/friends/requests/decline?requester_username=asker").await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = app.delete(&asker.token, "/api/friends/requests?friend_username=decliner").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.json::<Value>().await.unwrap()["detail"], "only the user who declined the request can remove it");
        let r = app.post(&asker.token, "/api/friends/requests?username=decliner").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "no second request");
        // The decliner may clear it; then a new request is possible.
        let r = app.delete(&decliner.token, "/api/friends/requests?friend_username=asker").await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = app.post(&asker.token, "/api/friends/requests?username=decliner").await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    async fn a_seen_mark_stops_at_the_newest_message(app) {
        let [a, b] = [app.user("sender").await, app.user("marker").await];
        app.befriend(&a, &b).await;
        assert_eq!(app.send_dm(&a, &b, "first").await.status(), StatusCode::CREATED);
        let r = app.post_json(&b.token, "/api/messages/seen", &json!({ "message_id": i32::MAX, "friend_username": "sender" })).await;
        assert_eq!(r.json::<Value>().await.unwrap()["updated"], true);
        assert_eq!(app.send_dm(&a, &b, "second").await.status(), StatusCode::CREATED);
        let group: Value = app.post_json(&a.token, "/api/group_chats/", &json!({ "group_chat_name": "marks", "usernames": ["marker"] })).await.json().await.unwrap();
        let g = group["group_chat_id"].as_i64().unwrap();
        app.post_json(&a.token, "/api/messages/", &json!({ "content": "one", "group_chat_id": g })).await;
        let r = app.post_json(&b.token, "/api/messages/seen", &json!({ "message_id": i32::MAX, "group_chat_id": g })).await;
        assert_eq!(r.json::<Value>().await.unwrap()["updated"], true);
        app.post_json(&a.token, "/api/messages/", &json!({ "content": "two", "group_chat_id": g })).await;
        let list: Value = app.get(&b.token, "/api/conversations").await.json().await.unwrap();
        for conversation in list.as_array().unwrap() {
            assert_eq!(conversation["unread"], 1, "the newer message is unread: {conversation}");
        }
        let history: Value = app.get(&b.token, "/api/messages/?friend_username=sender&limit=5").await.json().await.unwrap();
        assert_eq!(history["results"][0]["content"], "second");
        assert_eq!(history["results"][0]["seen"], false);
    }

    async fn adding_the_same_member_at_once_is_400_already_a_member(app) {
        let [a, b] = [app.user("adder").await, app.user("added").await];
        app.befriend(&a, &b).await;
        let group: Value = app.post_json(&a.token, "/api/group_chats/", &json!({ "group_chat_name": "race", "usernames": [] })).await.json().await.unwrap();
        let path = format!("/api/group_chats/{}/members", group["group_chat_id"]);
        let mut adds = Vec::new();
        for _ in 0..8 {
            let (client, url, token) = (app.api.clone(), app.url(&path), a.token.clone());
            adds.push(tokio::spawn(async move {
                let r = client.post(url).bearer_auth(token).json(&json!({ "username": "added" })).send().await.unwrap();
                (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
            }));
        }
        let mut created = 0;
        for add in adds {
            let (status, body) = add.await.unwrap();
            match status {
                StatusCode::CREATED => created += 1,
                StatusCode::BAD_REQUEST => assert_eq!(body["detail"], "already a member"),
                other => panic!("{other}: {body}"),
            }
        }
        assert_eq!(created, 1);
    }

    async fn client_keys_are_unique_per_sender_as_written(app) {
        let [a, b] = [app.user("keyed").await, app.user("keyfriend").await];
        app.befriend(&a, &b).await;
        let send = |key: &'static str| {
            let (app, token) = (&app, a.token.clone());
            async move {
                app.post_json(&token, "/api/messages/?addressee_username=keyfriend", &json!({ "content": key, "group_chat_id": null, "client_key": key })).await
            }
        };
        let first = send("Key-1").await;
        assert_eq!(first.status(), StatusCode::CREATED);
        let first: Value = first.json().await.unwrap();
        let other_case = send("key-1").await;
        assert_eq!(other_case.status(), StatusCode::CREATED, "another key");
        let other_case: Value = other_case.json().await.unwrap();
        assert_ne!(first["message_id"], other_case["message_id"]);
        let again = send("Key-1").await;
        assert_eq!(again.status(), StatusCode::OK, "the same key posts once");
        assert_eq!(again.json::<Value>().await.unwrap()["message_id"], first["message_id"]);
    }

    async fn errors_of_outer_layers_reach_pages_as_pages_and_the_api_as_json(app) {
        let browser = app.browser();
        browser.sign_up("layered").await;
        // CSRF (403): a page, a fragment for htmx, JSON for the API.
        let r = browser.post_raw("/profile", &[("first_name", "X")], &[]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(content_type(&r).starts_with("text/html"));
        let html = r.text().await.unwrap();
        assert!(html.contains("<!doctype html>") && html.contains("reload the page"), "{html}");
        let r = browser.post_raw("/profile", &[("first_name", "X")], &[("HX-Request", "true")]).await;
        assert!(content_type(&r).starts_with("text/plain"));
        assert!(r.text().await.unwrap().contains("CSRF"));
        let r = browser.client.post(format!("{}/api/friends/requests?username=x", browser.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(content_type(&r).starts_with("application/json"));
        assert!(r.json::<Value>().await.unwrap()["detail"].as_str().unwrap().contains("CSRF"));
        // Too large (413), before anything reads it.
        let big = "x".repeat(300 * 1024);
        let r = browser.post_raw("/profile", &[("first_name", &big)], &[]).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(content_type(&r).starts_with("text/html"));
        assert!(r.text().await.unwrap().contains("too large"));
        let user = app.user("bigsender").await;
        let r = app.post_json(&user.token, "/api/messages/?addressee_username=layered", &json!({ "content": big })).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(content_type(&r).starts_with("application/json"));
        assert!(r.json::<Value>().await.unwrap()["detail"].is_string());
        // The router's own (405, 404).
        let r = browser.get("/logout").await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(content_type(&r).starts_with("text/html"));
        let r = app.api.get(app.url("/api/auth/sign-in")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.json::<Value>().await.unwrap(), json!({ "detail": "Method Not Allowed" }));
        let r = app.api.get(app.url("/api/nowhere")).send().await.unwrap();
        assert_eq!(r.json::<Value>().await.unwrap(), json!({ "detail": "Not Found" }));
        // Security headers stay on a reshaped answer.
        let r = browser.post_raw("/profile", &[("first_name", "X")], &[]).await;
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        assert!(r.headers().contains_key("x-request-id"));
    }

    async fn event_streams_beyond_the_per_user_cap_are_429(app) {
        let app = spawn_app_on(app.database.clone(), &[("MAX_STREAMS_PER_USER", "2")]).await;
        let [a, b] = [app.user("streamer").await, app.user("other").await];
        let open = |user: &ApiUser| app.api.get(app.url("/api/events")).bearer_auth(&user.token).send();
        let first = open(&a).await.unwrap();
        let second = open(&a).await.unwrap();
        assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK));
        let third = open(&a).await.unwrap();
        assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(third.json::<Value>().await.unwrap()["detail"].as_str().unwrap().contains("too many open event streams"));
        assert_eq!(open(&b).await.unwrap().status(), StatusCode::OK, "per user");
        // A ticket counts the same.
        let ticket = app.post(&a.token, "/api/auth/socket-ticket").await.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
        let r = app.api.get(app.url(&format!("/api/events?access_token={ticket}"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        // Closing one frees its slot.
        drop(first);
        let mut reopened = StatusCode::TOO_MANY_REQUESTS;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let r = open(&a).await.unwrap();
            reopened = r.status();
            if reopened == StatusCode::OK {
                break;
            }
        }
        assert_eq!(reopened, StatusCode::OK);
        drop(second);
    }

    async fn connections_beyond_the_per_process_cap_are_429(app) {
        let app = spawn_app_on(app.database.clone(), &[("MAX_CONNECTIONS", "3")]).await;
        let address = format!("127.0.0.1:{}", app.port);
        let mut idle = Vec::new();
        for _ in 0..3 {
            idle.push(tokio::net::TcpStream::connect(&address).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ask = || async {
            let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
            stream.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").await.unwrap();
            let mut answer = String::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer)).await;
            answer
        };
        let refused = ask().await;
        assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
        assert!(refused.contains("too many open connections") && refused.to_lowercase().contains("retry-after"));
        idle.pop();
        let mut answer = String::new();
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            answer = ask().await;
            if answer.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(answer.starts_with("HTTP/1.1 200"), "a slot is free again: {answer}");
    }

    async fn the_dummy_hash_costs_what_the_cheapest_stored_hash_costs(app) {
        let hasher = messenger::auth::password::PasswordHasher::new(messenger::config::Argon2Cost::default()).unwrap();
        assert_eq!(hasher.dummy_parameters(), "$argon2id$v=19$m=65536,t=3,p=4");
        let insert = |name: &'static str, hash: &'static str| {
            let db = app.db.clone();
            async move {
                let sql = "INSERT INTO user (username, email, password_hash) VALUES (?, ?, ?)";
                let email = format!("{name}@example.com");
                match &db {
                    messenger::db::Db::MySql(pool) => { sqlx::query(sql).bind(name).bind(email).bind(hash).execute(pool).await.unwrap(); }
                    messenger::db::Db::Sqlite(pool) => { sqlx::query(sql).bind(name).bind(email).bind(hash).execute(pool).await.unwrap(); }
                }
            }
        };
        insert("strong", "$argon2id$v=19$m=65536,t=3,p=4$kJBP50st1vzVNskDs2zuoQ$Cm+XDBekCFiM0gjq0REmYRdx7TOoFijKamtDfaLvUxk").await;
        hasher.match_stored_hashes(&app.db).await.unwrap();
        assert_eq!(hasher.dummy_parameters(), "$argon2id$v=19$m=65536,t=3,p=4");
        // The original service's weaker hashes: an unknown address must not be slower to
        // refuse than their accounts.
        insert("weak", "$argon2id$v=19$m=19456,t=2,p=1$N8CPJhs2Khip11zBDWZBvw$rMmJKFvHJibY1387+ZEIeysddhZqQiF7EFri3meiBcE").await;
        insert("notargon", "$2b$12$abcdefghijklmnopqrstuuJZ1a2b3c4d5e6f7g8h9i0j1k2l3m4n5o").await;
        hasher.match_stored_hashes(&app.db).await.unwrap();
        assert_eq!(hasher.dummy_parameters(), "$argon2id$v=19$m=19456,t=2,p=1");
        let verified = hasher.verify("Password231", None).await.unwrap();
        assert_eq!(verified, messenger::auth::password::Verified::No);
    }
}

integration_test! {
    /// A server whose `lc_messages` is not English words its errors in that language (here a
    /// lock wait timeout in Spanish): retrying must not depend on the wording.
    #[needs(mysql)]
    async fn deadlocks_and_lock_timeouts_are_recognised_by_number_in_any_language() {
        use messenger::db::Retryable;
        let database = new_database(Backend::MySql).await;
        let pool = sqlx::MySqlPool::connect(&database.url).await.unwrap();
        sqlx::query("CREATE TABLE pair (id INT PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO pair VALUES (1, 0), (2, 0)")
            .execute(&pool)
            .await
            .unwrap();
        let mut a = pool.acquire().await.unwrap();
        let mut b = pool.acquire().await.unwrap();
        for conn in [&mut a, &mut b] {
            sqlx::query("SET SESSION lc_messages = 'es_ES', innodb_lock_wait_timeout = 1")
                .execute(&mut **conn)
                .await
                .unwrap();
        }
        // Lock wait timeout (1205): b waits for a row a holds.
        sqlx::query("BEGIN").execute(&mut *a).await.unwrap();
        sqlx::query("UPDATE pair SET n = n + 1 WHERE id = 1")
            .execute(&mut *a)
            .await
            .unwrap();
        sqlx::query("BEGIN").execute(&mut *b).await.unwrap();
        let timeout = sqlx::query("UPDATE pair SET n = n + 1 WHERE id = 1")
            .execute(&mut *b)
            .await
            .unwrap_err();
        assert!(
            !timeout.to_string().contains("Lock wait timeout"),
            "{timeout}"
        );
        assert!(timeout.should_retry(), "{timeout}");
        sqlx::query("ROLLBACK").execute(&mut *b).await.unwrap();
        // Deadlock (1213): a holds 1 and wants 2, b holds 2 and wants 1.
        sqlx::query("SET SESSION innodb_lock_wait_timeout = 20")
            .execute(&mut *b)
            .await
            .unwrap();
        sqlx::query("BEGIN").execute(&mut *b).await.unwrap();
        sqlx::query("UPDATE pair SET n = n + 1 WHERE id = 2")
            .execute(&mut *b)
            .await
            .unwrap();
        let a_wants_2 = tokio::spawn(async move {
            let result = sqlx::query("UPDATE pair SET n = n + 1 WHERE id = 2")
                .execute(&mut *a)
                .await;
            (a, result)
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let b_wants_1 = sqlx::query("UPDATE pair SET n = n + 1 WHERE id = 1")
            .execute(&mut *b)
            .await;
        let (_a, a_result) = a_wants_2.await.unwrap();
        let deadlock = [a_result.err(), b_wants_1.err()]
            .into_iter()
            .flatten()
            .next()
            .expect("one of the two is the deadlock's victim");
        assert!(deadlock.should_retry(), "{deadlock}");
        // MariaDB words its deadlock in English whatever lc_messages says (MySQL translates
        // it); a deadlock worded otherwise, as MySQL's Spanish would, is the same error 1213.
        let translated = sqlx::query(
            "SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'Encontrado interbloqueo; intente reiniciar la transacción'",
        )
        .execute(&pool)
        .await
        .unwrap_err();
        assert!(translated.should_retry(), "{translated}");
        // Other errors are not retried.
        let other = sqlx::query("SELECT * FROM no_such_table")
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(!other.should_retry());
    }
}
