//! Operations: Prometheus metrics on METRICS_ADDR only, `/health` from a cached check and
//! `/health/live`, and `messenger admin` (the real binary against a fresh database).

use std::{process::Stdio, sync::Arc, time::Duration};

use messenger::startup::Application;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::{both_backends, helpers::*, integration_test};

/// A port nothing listens on right now (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of the sample `name{labels…}` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let matches = metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse().ok()).flatten()
        })
}

async fn metrics_are_served_on_their_own_port(backend: Backend) {
    let database = new_database(backend).await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let app = spawn_app_on(Arc::new(database), &[("METRICS_ADDR", &addr)]).await;
    let scrape = || async {
        let r = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        r.text().await.unwrap()
    };

    let (a, b) = (app.user("metrics_a").await, app.user("metrics_b").await);
    app.befriend(&a, &b).await;
    let mut stream = app.events(&b, None).await;
    assert_eq!(
        app.send_dm(&a, &b, "counted").await.status(),
        StatusCode::CREATED
    );
    assert!(stream
        .next_of(&["message"], Duration::from_secs(5))
        .await
        .is_some());
    let r = app
        .get(&a.token, "/api/messages/?friend_username=metrics_b&limit=5")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // A page with an id in its path, a path no route has, and the probes.
    app.browser().get("/chats/metrics_b").await;
    app.browser().get("/no/such/page/4711").await;
    app.api.get(app.url("/health")).send().await.unwrap();
    app.api.get(app.url("/health/live")).send().await.unwrap();
    // Not on the public port.
    let public = app.api.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);

    let text = scrape().await;
    let requests = "messenger_http_requests_total";
    let history = [
        ("method", "GET"),
        ("route", "/api/messages/"),
        ("status", "200"),
    ];
    assert!(
        sample(&text, requests, &history).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    let sends = [
        ("method", "POST"),
        ("route", "/api/messages/"),
        ("status", "201"),
    ];
    assert!(sample(&text, requests, &sends).is_some(), "{text}");
    let page = [("route", "/chats/{who}"), ("status", "303")];
    assert!(
        sample(&text, requests, &page).is_some(),
        "route templates, not paths: {text}"
    );
    assert!(
        !text.contains("metrics_b\""),
        "no raw path is a label: {text}"
    );
    assert!(sample(
        &text,
        requests,
        &[("route", "unmatched"), ("status", "404")]
    )
    .is_some());
    assert!(
        !text.contains("route=\"/health"),
        "probes are not counted: {text}"
    );
    let latency = [("route", "/api/messages/"), ("le", "0.1")];
    assert!(
        sample(
            &text,
            "messenger_http_request_duration_seconds_bucket",
            &latency
        )
        .is_some(),
        "{text}"
    );
    assert_eq!(
        sample(&text, "messenger_event_streams", &[]),
        Some(1.0),
        "{text}"
    );
    assert!(sample(&text, "messenger_send_batch_size_count", &[]).unwrap_or(0.0) >= 1.0);
    assert!(sample(&text, "messenger_send_batch_size_bucket", &[("le", "64")]).is_some());
    assert!(
        sample(&text, "messenger_send_commit_duration_seconds_count", &[]).unwrap_or(0.0) >= 1.0
    );
    assert!(
        sample(&text, "messenger_event_tailer_lag_events", &[]).is_some(),
        "{text}"
    );
    assert!(
        sample(&text, "messenger_event_tailer_lag_seconds", &[]).is_some(),
        "{text}"
    );
    assert!(sample(&text, "messenger_db_pool_connections", &[("state", "idle")]).is_some());
    assert!(sample(
        &text,
        "messenger_db_pool_connections",
        &[("state", "in_use")]
    )
    .is_some());
    assert_eq!(
        sample(&text, "messenger_db_pool_max_connections", &[]),
        Some(8.0)
    );
    assert_eq!(sample(&text, "messenger_argon2_queued", &[]), Some(0.0));
    assert!(sample(&text, "messenger_argon2_running", &[]).is_some());
    assert!(
        text.contains("# HELP messenger_http_requests_total"),
        "{text}"
    );
    let mut families: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let all = families.len();
    families.sort_unstable();
    families.dedup();
    assert_eq!(families.len(), all, "each family once: {text}");
    assert!(
        families.contains(&"# TYPE messenger_event_streams gauge"),
        "{text}"
    );

    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = scrape().await;
    assert_eq!(
        sample(&text, "messenger_event_streams", &[]),
        Some(0.0),
        "{text}"
    );
}

mod metrics_on_their_own_port {
    use super::*;
    use crate::integration_test;

    integration_test! {
        async fn sqlite() {
            metrics_are_served_on_their_own_port(Backend::Sqlite).await;
        }

        #[needs(mysql)]
        async fn mysql() {
            metrics_are_served_on_their_own_port(Backend::MySql).await;
        }
    }
}

integration_test! {
    async fn without_metrics_addr_there_is_no_metrics_listener() {
        let database = new_database(Backend::Sqlite).await;
        let app = Application::build(test_config(&database.url, &[]))
            .await
            .unwrap();
        assert_eq!(app.metrics_port(), None);
    }
}

both_backends! {
    async fn health_answers_from_the_last_check_and_live_never_asks_the_database(app) {
        let r = app.api.get(app.url("/health")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.json::<Value>().await.unwrap(), serde_json::json!({"health": "Everything OK!"}));
        let r = app.api.get(app.url("/health/live")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.json::<Value>().await.unwrap()["health"], "alive");

        // The database goes away (the pool is the server's own): within the next check
        // (once a second) /health says so; /health/live does not care.
        app.db.close().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
        let answer = loop {
            let r = app.api.get(app.url("/health")).send().await.unwrap();
            if r.status() == StatusCode::SERVICE_UNAVAILABLE {
                break r.json::<Value>().await.unwrap();
            }
            assert!(tokio::time::Instant::now() < deadline, "/health still 200 after 4 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(answer, serde_json::json!({"health": "unavailable", "detail": "database unreachable"}));
        let r = app.api.get(app.url("/health/live")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}

/// What one `messenger admin …` run did.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the real binary's `admin` command against `database`, with `stdin` as its input
/// and only the variables given here in its environment.
async fn admin(database: &TestDatabase, args: &[&str], stdin: &str) -> Ran {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_messenger"))
        .arg("admin")
        .args(args)
        .env_clear()
        .envs([
            ("DATABASE_URL", database.url.as_str()),
            ("JWT_SECRET", JWT_SECRET),
            ("ARGON2_MEMORY_KIB", "1024"),
            ("ARGON2_ITERATIONS", "1"),
            ("ARGON2_PARALLELISM", "1"),
            ("NO_COLOR", "1"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the messenger binary runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("admin finishes within 60 s")
        .unwrap();
    let ran = Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        !ran.stderr.contains("unrecognized subcommand 'admin'"),
        "{} is not this build's binary: another checkout built into the same CARGO_TARGET_DIR \
         meanwhile; run the test again",
        env!("CARGO_BIN_EXE_messenger")
    );
    ran
}

/// Runs an admin command that must succeed, and returns what it printed.
async fn admin_ok(database: &TestDatabase, args: &[&str], stdin: &str) -> String {
    let ran = admin(database, args, stdin).await;
    assert_eq!(ran.code, 0, "admin {args:?}: {ran:?}");
    ran.stdout
}

/// Waits up to 3 s (credentials reach every process within a second) for `path` with
/// `token` to answer `status`.
async fn eventually(app: &TestApp, token: &str, path: &str, status: StatusCode) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let got = app.get(token, path).await.status();
        if got == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path}: {got}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next second has begun: a token issued from now on is newer than any sign-out
/// recorded before this call.
async fn next_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    tokio::time::sleep(Duration::from_nanos(
        1_000_000_000 - u64::from(now.subsec_nanos()),
    ))
    .await;
}

async fn token_of(app: &TestApp, email: &str, password: &str) -> String {
    let r = app.sign_in_raw(email, password).await;
    assert_eq!(r.status(), StatusCode::CREATED, "sign-in of {email}");
    r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn admin_commands_manage_accounts(backend: Backend) {
    let database = new_database(backend).await;
    let database = Arc::new(database);

    // A fresh database: the command migrates it as the server would.
    let counts = admin_ok(&database, &["counts"], "").await;
    assert_eq!(
        counts,
        "users 0\ndisabled users 0\nmessages 0\nevents 0\nsessions 0\n"
    );
    let created = admin_ok(
        &database,
        &[
            "create-user",
            "--username",
            "ops_alice",
            "--email",
            "ops_alice@example.com",
        ],
        "Opspassword1\n",
    )
    .await;
    assert!(
        created.starts_with("created user ") && created.contains("(ops_alice)"),
        "{created}"
    );

    let app = spawn_app_on(database.clone(), &[]).await;
    let bob = app.user("ops_bob").await;
    let token = token_of(&app, "ops_alice@example.com", "Opspassword1").await;
    let alice_id = app
        .get(&token, "/api/users/")
        .await
        .json::<Value>()
        .await
        .unwrap()["user_id"]
        .as_i64()
        .unwrap();
    let page = app.browser();
    assert_eq!(
        page.sign_in("ops_alice", "Opspassword1").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(page.get("/chats").await.status(), StatusCode::OK);

    // Disabled: signed out everywhere, and no way back in.
    let said = admin_ok(&database, &["disable", "ops_alice@example.com"], "").await;
    assert!(
        said.contains("ops_alice") && said.contains("disabled"),
        "{said}"
    );
    assert!(said.contains("(page sessions ended: 1)"), "{said}");
    let r = page.get("/chats").await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "the page session is gone"
    );
    assert!(location(&r).starts_with("/login"));
    eventually(&app, &token, "/api/users/", StatusCode::UNAUTHORIZED).await;
    let send = app
        .post_json(
            &token,
            "/api/messages/?addressee_username=ops_bob",
            &serde_json::json!({"content": "hi", "group_chat_id": null}),
        )
        .await;
    assert_eq!(
        send.status(),
        StatusCode::UNAUTHORIZED,
        "the send path refuses it too"
    );
    let r = app
        .sign_in_raw("ops_alice@example.com", "Opspassword1")
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        r.json::<Value>().await.unwrap()["detail"],
        "this account is disabled"
    );
    let r = app
        .sign_in_raw("ops_alice@example.com", "Wrong1password")
        .await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "only the password's owner learns it"
    );
    let r = app.browser().sign_in("ops_alice", "Opspassword1").await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "the sign-in page refuses it"
    );
    assert_eq!(
        app.get(&bob.token, "/api/users/").await.status(),
        StatusCode::OK
    );

    let list = admin_ok(&database, &["list-users"], "").await;
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines[0], "id\tusername\temail\tstatus");
    assert!(
        lines[1].starts_with(&format!(
            "{alice_id}\tops_alice\tops_alice@example.com\tdisabled since "
        )),
        "{list}"
    );
    assert_eq!(
        lines[2],
        format!("{}\tops_bob\tops_bob@example.com\tactive", bob.id)
    );
    let counts = admin_ok(&database, &["counts"], "").await;
    assert!(
        counts.starts_with("users 2\ndisabled users 1\nmessages 0\n"),
        "{counts}"
    );

    // Enabled: new credentials work; the ones from before stay void.
    let said = admin_ok(&database, &["enable", "ops_alice"], "").await;
    assert!(said.contains("enabled"), "{said}");
    next_second().await;
    let fresh = token_of(&app, "ops_alice@example.com", "Opspassword1").await;
    eventually(&app, &fresh, "/api/users/", StatusCode::OK).await;
    assert_eq!(
        app.get(&token, "/api/users/").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let said = admin_ok(&database, &["enable", "ops_alice"], "").await;
    assert!(said.contains("was not disabled"), "{said}");

    // A reset password: the old one fails, the new one works, tokens are signed out.
    admin_ok(
        &database,
        &["reset-password", "ops_alice"],
        "Newpassword2\n",
    )
    .await;
    let r = app
        .sign_in_raw("ops_alice@example.com", "Opspassword1")
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    eventually(&app, &fresh, "/api/users/", StatusCode::UNAUTHORIZED).await;
    next_second().await;
    token_of(&app, "ops_alice@example.com", "Newpassword2").await;

    // Bad input: one line, exit code 2, nothing changed.
    let refused: [(&[&str], &str, &str); 9] = [
        (
            &[
                "create-user",
                "--username",
                "_bad",
                "--email",
                "bad@example.com",
            ],
            "Password231\n",
            "invalid username",
        ),
        (
            &[
                "create-user",
                "--username",
                "fine_name",
                "--email",
                "not an email",
            ],
            "Password231\n",
            "invalid email",
        ),
        (
            &[
                "create-user",
                "--username",
                "fine_name",
                "--email",
                "fine@example.com",
            ],
            "short\n",
            "invalid password",
        ),
        (
            &[
                "create-user",
                "--username",
                "fine_name",
                "--email",
                "fine@example.com",
            ],
            "",
            "no password on stdin",
        ),
        (
            &[
                "create-user",
                "--username",
                "OPS_ALICE",
                "--email",
                "fine@example.com",
            ],
            "Password231\n",
            "is taken",
        ),
        (
            &[
                "create-user",
                "--username",
                "fine_name",
                "--email",
                "ops_bob@example.com",
            ],
            "Password231\n",
            "already exists",
        ),
        (&["disable", "nobody"], "", "no account"),
        (&["enable", "nobody@example.com"], "", "no account"),
        (&["reset-password", "nobody"], "Password231\n", "no account"),
    ];
    for (args, stdin, expected) in refused {
        let ran = admin(&database, args, stdin).await;
        assert_eq!(ran.code, 2, "{args:?}: {ran:?}");
        assert_eq!(ran.stderr.lines().count(), 1, "one line: {ran:?}");
        assert!(ran.stderr.contains(expected), "{args:?}: {ran:?}");
    }
    assert_eq!(app.count("user").await, 2);
}

mod admin_commands {
    use super::*;
    use crate::integration_test;

    integration_test! {
        async fn sqlite() {
            admin_commands_manage_accounts(Backend::Sqlite).await;
        }

        #[needs(mysql)]
        async fn mysql() {
            admin_commands_manage_accounts(Backend::MySql).await;
        }
    }
}
