//! Password reset by mail, and address checks, against a real SMTP server: the test run
//! starts Python's aiosmtpd (from PyPI, in a virtualenv outside the tree, as
//! `deploy/ci-checks.sh` keeps its linters) writing what it receives to a maildir, and
//! the tests follow the links in the mail it got. The mail tests declare `#[needs(python)]`: ignored where python3 cannot make a virtualenv, failing
//! with `CI` set.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{both_backends, helpers::*, integration_test};

/// The aiosmtpd the tests install when it is missing (pinned: a release cannot change
/// what the tests see).
const AIOSMTPD: &str = "aiosmtpd==1.4.6";

/// The virtualenv's Python with aiosmtpd importable, installed once per test run.
fn python_with_aiosmtpd() -> &'static Result<PathBuf, String> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let tools = std::env::var_os("MESSENGER_TOOLS_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME")
                    .map(|d| PathBuf::from(d).join("messenger-ci-tools"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/messenger-ci-tools"))
            })
            .ok_or("neither MESSENGER_TOOLS_DIR, XDG_CACHE_HOME nor HOME is set")?;
        let venv = tools.join("venv");
        let python = venv.join("bin/python");
        let run = |command: &mut Command| -> Result<(), String> {
            let out = command
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .map_err(|e| format!("{command:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{command:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        if !python.exists() {
            std::fs::create_dir_all(&tools).map_err(|e| format!("{}: {e}", tools.display()))?;
            run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
        }
        let importable = |python: &Path| run(Command::new(python).args(["-c", "import aiosmtpd"]));
        if importable(&python).is_err() {
            eprintln!("installing {AIOSMTPD} into {}", venv.display());
            run(Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                AIOSMTPD,
            ]))?;
            importable(&python)?;
        }
        Ok(python)
    })
}

/// A running aiosmtpd that keeps every mail it receives in a maildir.
pub struct SmtpServer {
    pub port: u16,
    maildir: tempfile::TempDir,
    child: Child,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpServer {
    /// Starts one. Tests that use it declare `#[needs(python)]`: where python3 can make a
    /// virtualenv, failing to install or start aiosmtpd is a failure.
    pub async fn start() -> Self {
        let python = match python_with_aiosmtpd() {
            Ok(python) => python.clone(),
            Err(e) => panic!("the test SMTP server (Python's {AIOSMTPD}) cannot be started: {e}"),
        };
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let maildir = tempfile::tempdir().expect("temp dir");
            let mut child = Command::new(&python)
                .args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                // A path that does not exist yet: Python's Maildir makes its folders then.
                .arg(maildir.path().join("mail"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("aiosmtpd starts");
            for _ in 0..100 {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return Self {
                        port,
                        maildir,
                        child,
                    };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("aiosmtpd did not start listening");
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The raw text of every mail received so far.
    pub fn received(&self) -> Vec<String> {
        let mut mails = Vec::new();
        for folder in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.path().join("mail").join(folder))
            else {
                continue;
            };
            for entry in entries.flatten() {
                if let Ok(text) = std::fs::read_to_string(entry.path()) {
                    mails.push(text);
                }
            }
        }
        mails
    }

    /// The first mail to `to` that arrives within 10 s, decoded enough to read links.
    pub async fn mail_to(&self, to: &str) -> String {
        for _ in 0..200 {
            if let Some(mail) = self
                .received()
                .into_iter()
                .find(|m| m.lines().any(|l| l.starts_with("To:") && l.contains(to)))
            {
                return unfold_quoted_printable(&mail);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no mail to {to} arrived");
    }
}

/// Joins quoted-printable soft line breaks and decodes `=3D`, enough to read a URL.
fn unfold_quoted_printable(mail: &str) -> String {
    mail.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

/// The first link in `mail` whose path starts with `path`.
pub fn link_in(mail: &str, path: &str) -> String {
    let start = mail
        .find("http://127.0.0.1:")
        .and_then(|i| mail[i..].find(path).map(|j| i + j))
        .unwrap_or_else(|| panic!("no {path} link in the mail:\n{mail}"));
    let from = mail[..start].rfind("http://").unwrap();
    let end = mail[start..]
        .find(|c: char| c.is_whitespace())
        .map_or(mail.len(), |e| start + e);
    mail[from..end].to_string()
}

fn path_of(link: &str) -> String {
    let url = url::Url::parse(link).unwrap();
    format!("{}?{}", url.path(), url.query().unwrap_or(""))
}

fn secret_of(link: &str) -> String {
    link.split("token=").nth(1).unwrap().to_string()
}

/// A reset link for `user_id` made `minutes_ago` minutes ago (negative: in the past),
/// stored as the server stores one.
async fn insert_reset_link(app: &TestApp, user_id: i64, secret: &str, minutes: i64) {
    let created = messenger::db::now() + time::Duration::minutes(minutes);
    let expires = created + time::Duration::minutes(messenger::accounts::RESET_LINK_MINUTES);
    let hash = messenger::accounts::hash_link_secret(secret);
    let sql = "INSERT INTO account_token (token_hash, user_id, purpose, created_date_time, expires_date_time) VALUES (?, ?, 'reset', ?, ?)";
    match &app.db {
        messenger::db::Db::MySql(pool) => {
            sqlx::query(sql)
                .bind(hash)
                .bind(user_id)
                .bind(created)
                .bind(expires)
                .execute(pool)
                .await
                .unwrap();
        }
        messenger::db::Db::Sqlite(pool) => {
            sqlx::query(sql)
                .bind(hash)
                .bind(user_id)
                .bind(created)
                .bind(expires)
                .execute(pool)
                .await
                .unwrap();
        }
    }
}

/// One number from the database (tests build the SQL from their own literals only).
async fn scalar_i64(app: &TestApp, sql: &str) -> i64 {
    match &app.db {
        messenger::db::Db::MySql(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        messenger::db::Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    }
}

/// An app whose mail goes to a fresh aiosmtpd.
async fn app_with_mail(backend: Backend, extra: &[(&str, &str)]) -> (TestApp, SmtpServer) {
    let smtp = SmtpServer::start().await;
    let url = smtp.url();
    let mut vars = vec![
        ("SMTP_URL", url.as_str()),
        ("MAIL_FROM", "Messenger <chat@example.com>"),
    ];
    vars.extend_from_slice(extra);
    let app = spawn_app_with(backend, &vars).await;
    (app, smtp)
}

async fn reset_by_mail(backend: Backend) {
    let (app, smtp) = app_with_mail(backend, &[]).await;
    let user = app.user("forgetful").await;
    // Two signed-in browsers, a personal API token and the JWT from sign-up.
    let laptop = app.browser();
    assert_eq!(
        laptop.sign_in("forgetful", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    let phone = app.browser();
    assert_eq!(
        phone.sign_in("forgetful", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    let r = app
        .post_json(
            &user.token,
            "/api/tokens",
            &json!({ "name": "backup", "scope": "read" }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let personal = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        app.get(&personal, "/api/users/").await.status(),
        StatusCode::OK
    );

    // "Forgot password" is linked from the sign-in page.
    let visitor = app.browser();
    assert!(visitor
        .get_html("/login")
        .await
        .contains(r#"href="/password/forgot""#));
    let r = visitor
        .post_form(
            "/password/forgot",
            "/password/forgot",
            &[("email", "FORGETFUL@example.com")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("If an account has that address"));

    let mail = smtp.mail_to("forgetful@example.com").await;
    assert!(
        mail.contains("From: Messenger <chat@example.com>"),
        "{mail}"
    );
    assert!(
        mail.contains("Subject: Reset your Messenger password"),
        "{mail}"
    );
    let link = link_in(&mail, "/password/reset?token=");
    assert!(
        link.starts_with(&app.address),
        "{link} is on the server's own address"
    );
    let secret = secret_of(&link);
    // Only the link's hash is stored.
    let stored = scalar_i64(
        &app,
        &format!("SELECT COUNT(*) FROM account_token WHERE token_hash = '{secret}'"),
    )
    .await;
    assert_eq!(stored, 0, "the secret itself is not stored");
    assert_eq!(
        scalar_i64(&app, "SELECT COUNT(*) FROM account_token").await,
        1
    );

    // Following the link from a browser shows the form; a weak password is refused.
    let html = visitor.get_html(&path_of(&link)).await;
    assert!(html.contains("Choose a new password") && html.contains(&secret));
    let r = visitor
        .post_form(
            &path_of(&link),
            "/password/reset",
            &[
                ("token", &secret),
                ("new_password", "weak"),
                ("new_password_again", "weak"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = visitor
        .post_form(
            &path_of(&link),
            "/password/reset",
            &[
                ("token", &secret),
                ("new_password", "Resetted1"),
                ("new_password_again", "Resetted1"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/login?done=reset");

    // Everything signed in before is signed out or revoked.
    assert_eq!(laptop.get("/chats").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(phone.get("/chats").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.get(&user.token, "/api/users/").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get(&personal, "/api/users/").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.count("browser_session").await, 0);
    // The new password works, the old one does not.
    assert_eq!(
        app.sign_in_raw("forgetful@example.com", PASSWORD)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.sign_in_raw("forgetful@example.com", "Resetted1")
            .await
            .status(),
        StatusCode::CREATED
    );

    // The link works once.
    let r = visitor.get(&path_of(&link)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("invalid or has expired"));
    let r = app
        .api
        .post(app.url("/api/auth/password-reset/confirm"))
        .json(&json!({ "token": secret, "new_password": "Another1pw" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

integration_test! {
    #[needs(python)]
    async fn a_reset_link_arrives_by_mail_works_once_and_signs_out_everywhere_sqlite() {
        reset_by_mail(Backend::Sqlite).await;
    }

    #[needs(python, mysql)]
    async fn a_reset_link_arrives_by_mail_works_once_and_signs_out_everywhere_mysql() {
        reset_by_mail(Backend::MySql).await;
    }
}

async fn api_reset_and_unknown_addresses(backend: Backend) {
    let (app, smtp) = app_with_mail(backend, &[]).await;
    app.user("scripted").await;
    let ask = |email: &'static str| {
        app.api
            .post(app.url("/api/auth/password-reset"))
            .json(&json!({ "email": email }))
            .send()
    };
    let known = ask("scripted@example.com").await.unwrap();
    let unknown = ask("nobody@example.com").await.unwrap();
    assert_eq!(
        (known.status(), unknown.status()),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED)
    );
    assert_eq!(
        known.json::<Value>().await.unwrap(),
        unknown.json::<Value>().await.unwrap(),
        "the same answer either way"
    );
    let mail = smtp.mail_to("scripted@example.com").await;
    let secret = secret_of(&link_in(&mail, "/password/reset?token="));
    let confirm = |token: String, password: &'static str| {
        app.api
            .post(app.url("/api/auth/password-reset/confirm"))
            .json(&json!({ "token": token, "new_password": password }))
            .send()
    };
    let r = confirm(secret.clone(), "weak").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap()["detail"],
        "invalid password"
    );
    let r = confirm(secret, "ByScript1").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.sign_in_raw("scripted@example.com", "ByScript1")
            .await
            .status(),
        StatusCode::CREATED
    );
    // Nothing was sent to the unknown address.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(smtp
        .received()
        .iter()
        .all(|m| !m.contains("nobody@example.com")));
    assert_eq!(smtp.received().len(), 1);

    // The page answers an unknown address exactly as a known one.
    let visitor = app.browser();
    let known = visitor
        .post_form(
            "/password/forgot",
            "/password/forgot",
            &[("email", "scripted@example.com")],
        )
        .await;
    let known = (known.status(), known.text().await.unwrap());
    let unknown = visitor
        .post_form(
            "/password/forgot",
            "/password/forgot",
            &[("email", "nobody@example.com")],
        )
        .await;
    let unknown = (unknown.status(), unknown.text().await.unwrap());
    assert_eq!(known, unknown);
}

integration_test! {
    #[needs(python)]
    async fn the_api_resets_too_and_unknown_addresses_get_the_same_answer_and_no_mail_sqlite() {
        api_reset_and_unknown_addresses(Backend::Sqlite).await;
    }

    #[needs(python, mysql)]
    async fn the_api_resets_too_and_unknown_addresses_get_the_same_answer_and_no_mail_mysql() {
        api_reset_and_unknown_addresses(Backend::MySql).await;
    }
}

async fn verification(backend: Backend) {
    let (app, smtp) = app_with_mail(backend, &[("REQUIRE_EMAIL_VERIFICATION", "true")]).await;
    // Pages: sign-up says to check the mail; sign-in waits for the address.
    let browser = app.browser();
    let r = browser.sign_up("newcomer").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("Check your email"));
    let r = browser.sign_in("newcomer", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Confirm your email address first"));
    let r = browser.sign_in("newcomer", "Wrong1password").await;
    assert!(
        r.text().await.unwrap().contains("Incorrect email"),
        "a wrong password says nothing of the address"
    );
    let mail = smtp.mail_to("newcomer@example.com").await;
    let link = link_in(&mail, "/verify-email?token=");
    let r = browser.get(&path_of(&link)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/login?done=verified");
    assert_eq!(
        browser.sign_in("newcomer", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        browser.get(&path_of(&link)).await.status(),
        StatusCode::NOT_FOUND,
        "used once"
    );

    // API: 202 without a token; 403 until confirmed.
    let r = app
        .sign_up_raw("apinew", "apinew@example.com", PASSWORD)
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app.sign_in_raw("apinew@example.com", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let mail = smtp.mail_to("apinew@example.com").await;
    let r = app
        .api
        .post(app.url("/api/auth/verify-email"))
        .json(&json!({ "token": secret_of(&link_in(&mail, "/verify-email?token=")) }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        app.sign_in_raw("apinew@example.com", PASSWORD)
            .await
            .status(),
        StatusCode::CREATED
    );
}

integration_test! {
    #[needs(python)]
    async fn with_verification_required_an_account_waits_for_its_mailed_link_sqlite() {
        verification(Backend::Sqlite).await;
    }

    #[needs(python, mysql)]
    async fn with_verification_required_an_account_waits_for_its_mailed_link_mysql() {
        verification(Backend::MySql).await;
    }
}

/// Resets per address: 2 an hour here (so 10 per client address).
const RESET_LIMITS: &[(&str, &str)] = &[("PASSWORD_RESETS_PER_HOUR", "2"), ("TRUST_PROXY", "true")];

async fn forgot_from(app: &TestApp, ip: &str, email: &str) -> reqwest::Response {
    app.api
        .post(app.url("/api/auth/password-reset"))
        .header("x-forwarded-for", ip)
        .json(&json!({ "email": email }))
        .send()
        .await
        .unwrap()
}

both_backends! {
    async fn reset_requests_are_limited_per_address_and_per_client(app) {
        // No SMTP here: the mail goes to the log (the laptop default) and nothing fails.
        let app = spawn_app_on(app.database.clone(), RESET_LIMITS).await;
        app.user("limited").await;
        assert_eq!(forgot_from(&app, "203.0.113.1", "limited@example.com").await.status(), StatusCode::ACCEPTED);
        assert_eq!(forgot_from(&app, "203.0.113.2", "LIMITED@example.com").await.status(), StatusCode::ACCEPTED);
        let r = forgot_from(&app, "203.0.113.3", "limited@example.com").await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "per address, from any client");
        assert!(r.headers().contains_key("retry-after"));
        // An address without an account is counted the same (the answer must not differ).
        for ip in ["203.0.113.4", "203.0.113.5"] {
            assert_eq!(forgot_from(&app, ip, "ghost@example.com").await.status(), StatusCode::ACCEPTED);
        }
        assert_eq!(forgot_from(&app, "203.0.113.6", "ghost@example.com").await.status(), StatusCode::TOO_MANY_REQUESTS);
        // Per client: 10 an hour over all addresses.
        for i in 0..10 {
            let r = forgot_from(&app, "198.51.100.7", &format!("someone{i}@example.com")).await;
            assert_eq!(r.status(), StatusCode::ACCEPTED, "request {i}");
        }
        assert_eq!(forgot_from(&app, "198.51.100.7", "someone.else@example.com").await.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(app.count("account_token").await, 2, "a link per allowed request of the real account");
    }

    async fn a_reset_link_works_for_thirty_minutes(app) {
        let user = app.user("expiring").await;
        // Links whose secret the test knows: one made 31 minutes ago, one just now.
        let old = "1".repeat(64);
        let fresh = "2".repeat(64);
        insert_reset_link(&app, user.id, &old, -31).await;
        insert_reset_link(&app, user.id, &fresh, 0).await;
        let visitor = app.browser();
        let r = visitor.get(&format!("/password/reset?token={old}")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
        let confirm = |token: String| {
            app.api
                .post(app.url("/api/auth/password-reset/confirm"))
                .json(&json!({ "token": token, "new_password": "Password999" }))
                .send()
        };
        assert_eq!(confirm(old).await.unwrap().status(), StatusCode::BAD_REQUEST);
        assert_eq!(confirm("unknown".into()).await.unwrap().status(), StatusCode::BAD_REQUEST);
        assert_eq!(app.sign_in_raw("expiring@example.com", PASSWORD).await.status(), StatusCode::CREATED);
        let r = visitor.get(&format!("/password/reset?token={fresh}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(confirm(fresh).await.unwrap().status(), StatusCode::OK);
        assert_eq!(app.sign_in_raw("expiring@example.com", "Password999").await.status(), StatusCode::CREATED);
    }
}
