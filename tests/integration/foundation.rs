//! The foundation: health, start-up errors, the command line, migrations and adoption of
//! the original service's database, security headers and static assets.

use std::{process::Command, time::Duration};

use reqwest::StatusCode;
use serde_json::Value;

use crate::{both_backends, helpers::*, integration_test};

both_backends! {
    async fn health_answers_when_the_database_does(app) {
        let r = app.api.get(app.url("/health")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.json::<Value>().await.unwrap(), serde_json::json!({ "health": "Everything OK!" }));
    }

    async fn health_is_503_quickly_when_the_database_is_gone(app) {
        app.db.close().await;
        let started = std::time::Instant::now();
        // /health answers from a check made once a second: the next one notices.
        let r = loop {
            let r = app.api.get(app.url("/health")).send().await.unwrap();
            if r.status() != StatusCode::OK || started.elapsed() > Duration::from_secs(3) {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
        let body: Value = r.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().contains("database"));
    }

    async fn the_four_friendship_status_codes_are_seeded(app) {
        assert_eq!(app.count("friendship_status_code").await, 4);
    }

    async fn pages_carry_security_headers_and_assets_are_cacheable(app) {
        let r = app.api.get(app.url("/login")).send().await.unwrap();
        let h = r.headers().clone();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h.contains_key("referrer-policy"));
        assert!(h.contains_key("x-request-id"));
        let html = r.text().await.unwrap();
        let start = html.find("/static/htmx.min.js?v=").expect("htmx linked with a content hash");
        let url = &html[start..start + html[start..].find('"').unwrap()];
        let asset = app.api.get(app.url(url)).send().await.unwrap();
        assert_eq!(asset.status(), StatusCode::OK);
        assert!(asset.headers()["cache-control"].to_str().unwrap().contains("immutable"));
        let etag = asset.headers()["etag"].clone();
        assert!(asset.text().await.unwrap().contains("htmx"));
        let again = app.api.get(app.url(url)).header("if-none-match", etag).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }

    async fn unknown_pages_and_api_paths_are_404_in_their_own_format(app) {
        let page = app.api.get(app.url("/no/such/page")).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::NOT_FOUND);
        assert!(page.text().await.unwrap().contains("<html"));
        let api = app.api.get(app.url("/api/no/such/thing")).send().await.unwrap();
        assert_eq!(api.status(), StatusCode::NOT_FOUND);
        assert_eq!(api.json::<Value>().await.unwrap()["detail"], "Not Found");
    }

    async fn oversized_bodies_are_refused_with_413(app) {
        let user = app.user("bigbody").await;
        let huge = "x".repeat(400 * 1024);
        let r = app.api.post(app.url("/api/messages/?addressee_username=bigbody")).bearer_auth(&user.token)
            .header("content-type", "application/json").body(format!("{{\"content\":\"{huge}\"}}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}

fn messenger_binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_messenger"))
}

integration_test! {
    fn a_bad_database_url_stops_start_up_with_one_clear_line() {
        let out = messenger_binary()
            .env("DATABASE_URL", "postgres://nope")
            .env("BIND_ADDR", "127.0.0.1:0")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("DATABASE_URL"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    fn a_bad_port_names_the_variable() {
        let out = messenger_binary()
            .env("BIND_ADDR", "127.0.0.1:99999")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("BIND_ADDR") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }

    fn an_unreachable_mysql_is_one_error_line_not_a_panic() {
        let out = messenger_binary()
            .env("DATABASE_URL", "mysql://user:pw@127.0.0.1:1/db")
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains("cannot reach the database"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    // The runtime is multi-threaded: the blocking `output()` below must not stall the
    // server it calls.
    async fn healthcheck_command_exits_0_against_a_server_and_1_without_one() {
        let app = spawn_app(Backend::Sqlite).await;
        let ok = messenger_binary()
            .arg("healthcheck")
            .env("BIND_ADDR", format!("127.0.0.1:{}", app.port))
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let free_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let down = messenger_binary()
            .arg("healthcheck")
            .env("BIND_ADDR", format!("127.0.0.1:{free_port}"))
            .output()
            .unwrap();
        assert_eq!(down.status.code(), Some(1));
    }

    async fn migrate_command_prepares_a_fresh_sqlite_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("m.db").display());
        let out = messenger_binary()
            .arg("migrate")
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let codes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM friendship_status_code")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(codes, 4);
    }

    /// The original service's schema, with rows, is adopted: the baseline is recorded, only
    /// the additive migrations run, and every row survives and is usable.
    #[needs(mysql)]
    async fn an_existing_database_of_the_original_service_is_adopted_without_loss() {
        let database = new_database(Backend::MySql).await;
        let pool = sqlx::MySqlPool::connect(&database.url).await.unwrap();
        let schema = include_str!("../fixtures/schema-mysql.sql");
        sqlx::raw_sql(schema)
            .execute(&pool)
            .await
            .expect("original schema loads");
        let hash = "$argon2id$v=19$m=65536,t=3,p=4$kJBP50st1vzVNskDs2zuoQ$Cm+XDBekCFiM0gjq0REmYRdx7TOoFijKamtDfaLvUxk";
        sqlx::raw_sql(&format!(
            "INSERT INTO friendship_status_code VALUES ('R','REQUESTED'),('A','ACCEPTED'),('D','DECLINED'),('B','BLOCKED');
             INSERT INTO user (user_id, username, password_hash, email) VALUES (1, 'olduser', '{hash}', 'old@example.com'), (2, 'oldfriend', '{hash}', 'friend@example.com');
             INSERT INTO friendship VALUES (1, 2, '2023-05-01 10:00:00');
             INSERT INTO friendship_status VALUES (1, 2, '2023-05-01 10:00:00', 'R', 1), (1, 2, '2023-05-01 10:05:00', 'A', 2);
             INSERT INTO message (sender_id, reciever_id, content, created_date_time, seen) VALUES (1, 2, 'from the old days', '2023-05-01 10:06:00', 1);"
        ))
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let database = std::sync::Arc::new(database);
        let app = spawn_app_on(database.clone(), &[]).await;
        assert_eq!(app.count("user").await, 2);
        assert_eq!(app.count("friendship_status").await, 2);
        assert_eq!(app.count("message").await, 1);
        assert_eq!(app.count("friendship_status_code").await, 4);
        assert_eq!(
            app.count("alembic_version").await,
            1,
            "the original's alembic stamp stays"
        );

        // The old user signs in with the original's hash and reads the old history.
        let r = app.sign_in_raw("old@example.com", "Password231").await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let token = r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let page: Value = app
            .get(&token, "/api/messages/?friend_username=oldfriend&limit=10")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(page["results"][0]["content"], "from the old days");
        let friends: Value = app
            .get(&token, "/api/friends/?limit=10")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(friends["results"][0]["username"], "oldfriend");
        // And the widened columns took: a 2,000-character message fits.
        let long = "y".repeat(2000);
        let r = app
            .post_json(
                &token,
                "/api/messages/?addressee_username=oldfriend",
                &serde_json::json!({ "content": long }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);

        // A second start finds nothing left to apply.
        drop(app);
        let again = spawn_app_on(database, &[]).await;
        assert_eq!(again.count("message").await, 2);
    }
}
