//! `deploy/nginx.conf`, proven by running it: nginx from Debian in front of two server
//! processes on one database, over HTTPS with a throw-away certificate.
//!
//! The file is used as it is, except where it cannot be: the upstream addresses (the two
//! test servers), the listen ports (free ports on 127.0.0.1; the IPv6 listens go), and
//! the certificate paths. Every other line is checked to be in the running configuration
//! unchanged. The surrounding `http {}` block is Debian's default (gzip on, as an
//! installed nginx has it), with logs, pid and temporary files in a temporary directory.
//!
//! Needs `/usr/sbin/nginx` and `openssl` (`#[needs(nginx)]`): without them the test shows as
//! ignored, or fails when `CI` is set.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::helpers::*;

const NGINX: &str = "/usr/sbin/nginx";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The lines of `deploy/nginx.conf` the test replaces, in the order of [`adapt`].
const REPLACED: [&str; 7] = [
    "    server 127.0.0.1:8000 max_fails=3 fail_timeout=10s;",
    "    listen 80;",
    "    listen [::]:80;",
    "    listen 443 ssl http2;",
    "    listen [::]:443 ssl http2;",
    "    ssl_certificate     /etc/letsencrypt/live/chat.example.com/fullchain.pem;",
    "    ssl_certificate_key /etc/letsencrypt/live/chat.example.com/privkey.pem;",
];

/// `deploy/nginx.conf` with the [`REPLACED`] lines substituted.
fn adapt(
    original: &str,
    upstreams: &[u16],
    http: u16,
    https: u16,
    cert: &Path,
    key: &Path,
) -> String {
    let replacements = [
        upstreams
            .iter()
            .map(|port| format!("    server 127.0.0.1:{port} max_fails=3 fail_timeout=10s;"))
            .collect::<Vec<_>>()
            .join("\n"),
        // The IPv6 listens go: one address is enough here.
        format!("    listen 127.0.0.1:{http};"),
        String::new(),
        format!("    listen 127.0.0.1:{https} ssl http2;"),
        String::new(),
        format!("    ssl_certificate     {};", cert.display()),
        format!("    ssl_certificate_key {};", key.display()),
    ];
    for (i, from) in REPLACED.iter().enumerate() {
        let count = original.lines().filter(|l| l == from).count();
        // The upstream's server line stands in each upstream block (pages and socket.io).
        let expected = if i == 0 { count.max(1) } else { 1 };
        assert_eq!(
            count, expected,
            "deploy/nginx.conf no longer has the line {from:?}: update this test's substitutions"
        );
    }
    original
        .lines()
        .map(
            |line| match REPLACED.iter().position(|from| *from == line) {
                Some(i) => replacements[i].clone(),
                None => line.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n")
}

/// nginx running `deploy/nginx.conf` in a temporary directory; stopped when dropped.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    https: u16,
    http: u16,
}

impl Nginx {
    fn start(upstreams: &[u16]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // nginx's workers run as an unprivileged user when the master is root: they must
        // reach the temporary files.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(made.success(), "openssl made no certificate");
        let (http, https) = (free_port(), free_port());
        let original =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf"))
                .unwrap();
        let adapted = adapt(&original, upstreams, http, https, &cert, &key);
        std::fs::write(dir.path().join("messenger.conf"), adapted).unwrap();
        let d = dir.path().display();
        // Debian's /etc/nginx/nginx.conf, less its includes of sites and modules.
        let main = format!(
            "worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log;\n\
             events {{ worker_connections 768; }}\n\
             http {{\n\
                 sendfile on;\n\
                 tcp_nopush on;\n\
                 types_hash_max_size 2048;\n\
                 include /etc/nginx/mime.types;\n\
                 default_type application/octet-stream;\n\
                 ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;\n\
                 ssl_prefer_server_ciphers on;\n\
                 access_log {d}/access.log;\n\
                 gzip on;\n\
                 client_body_temp_path {d}/client_body;\n\
                 proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n\
                 uwsgi_temp_path {d}/uwsgi;\n\
                 scgi_temp_path {d}/scgi;\n\
                 include {d}/messenger.conf;\n\
             }}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
        let child = Command::new(NGINX)
            .args(Self::arguments(dir.path()))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nginx starts");
        let mut nginx = Nginx {
            child,
            dir,
            https,
            http,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", https)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                let mut stderr = String::new();
                use std::io::Read;
                nginx
                    .child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .ok();
                panic!("nginx exited with {status}: {stderr}");
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        nginx
    }

    fn arguments(dir: &Path) -> Vec<String> {
        let d = dir.display();
        vec![
            "-p".into(),
            format!("{d}/"),
            "-e".into(),
            format!("{d}/error.log"),
            "-c".into(),
            format!("{d}/nginx.conf"),
        ]
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https)
    }

    /// What nginx logged about errors so far.
    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// `nginx -T`: the configuration as nginx read it.
    fn effective_config(&self) -> String {
        let out = Command::new(NGINX)
            .args(Self::arguments(self.dir.path()))
            .arg("-T")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nginx -T: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new(NGINX)
            .args(Self::arguments(self.dir.path()))
            .args(["-s", "stop"])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

/// An HTTPS client that takes the throw-away certificate, connecting from `from` (any
/// 127.0.0.0/8 address is this machine: several clients, each with its own address).
fn client(from: Ipv4Addr) -> Client {
    Client::builder()
        .danger_accept_invalid_certs(true)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .local_address(IpAddr::V4(from))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The body of the `location` block `path` in nginx's effective configuration.
fn location_block<'a>(config: &'a str, path: &str) -> &'a str {
    let start = config
        .rfind(&format!("location {path} {{"))
        .unwrap_or_else(|| panic!("no location {path}"));
    let body = &config[start..];
    &body[..body.find('}').unwrap()]
}

async fn sign_up(client: &Client, nginx: &Nginx, username: &str) -> String {
    let r = client
        .post(nginx.url(&format!("/api/auth/sign-up?username={username}")))
        .form(&[
            ("grant_type", "password"),
            ("username", &format!("{username}@example.com")),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "sign-up of {username} through nginx"
    );
    r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn through_nginx(backend: Backend) {
    let database = new_database(backend).await;
    let database = Arc::new(database);
    let settings = [
        ("TRUST_PROXY", "true"),
        ("COOKIE_SECURE", "true"),
        ("LOGIN_ATTEMPTS_PER_MINUTE", "1"),
        ("EVENT_POLL_MILLISECONDS", "10"),
    ];
    let first = spawn_app_on(database.clone(), &settings).await;
    let second = spawn_app_on(database.clone(), &settings).await;
    let nginx = Nginx::start(&[first.port, second.port]);

    // The configuration nginx runs is the file's, but for the substituted lines.
    let original =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf")).unwrap();
    let effective = nginx.effective_config();
    for line in original
        .lines()
        .filter(|l| !REPLACED.contains(l) && !l.trim().is_empty())
    {
        assert!(
            effective.contains(line),
            "nginx does not run the line {line:?}"
        );
    }
    for path in ["/events", "/api/events"] {
        let block = location_block(&effective, path);
        for directive in [
            "proxy_buffering off;",
            "proxy_read_timeout 1h;",
            "proxy_send_timeout 1h;",
            "gzip off;",
        ] {
            assert!(
                block.contains(directive),
                "location {path} lacks {directive}"
            );
        }
    }
    assert!(location_block(&effective, "/").contains("proxy_read_timeout 60s;"));

    // Plain HTTP is sent to HTTPS.
    let r = client(Ipv4Addr::LOCALHOST)
        .get(format!("http://127.0.0.1:{}/chats", nginx.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(location_header(&r), "https://127.0.0.1/chats");

    // Sign-up, friendship and a chat through the proxy; a page sign-in with its secure
    // session cookie.
    let api = client(Ipv4Addr::LOCALHOST);
    let alice = sign_up(&api, &nginx, "px_alice").await;
    let bob = sign_up(&api, &nginx, "px_bob").await;
    let r = api
        .post(nginx.url("/api/friends/requests?username=px_bob"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().contains_key("strict-transport-security"));
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(
        request_id.len() == 32 && request_id.chars().all(|c| c.is_ascii_hexdigit()),
        "nginx's $request_id: {request_id}"
    );
    let r = api
        .post(nginx.url("/api/friends/requests/accept?requester_username=px_alice"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let page = PageClient {
        client: client(Ipv4Addr::LOCALHOST),
        base: nginx.url(""),
    };
    let r = page.sign_in("px_alice", PASSWORD).await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "page sign-in through nginx"
    );
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("Secure"), "{cookie}");

    // Events arrive through nginx as they happen: nothing buffers them.
    let response = Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
        .get(nginx.url("/api/events"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = EventStream::new(response);
    let r = page
        .post_form(
            "/chats/@px_bob",
            "/chats/@px_bob/messages",
            &[("content", "hello from the page")],
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "a message sent from the page"
    );
    let event = stream
        .next_of(&["message"], Duration::from_secs(5))
        .await
        .expect("the page's message arrives");
    assert_eq!(event.json()["content"], "hello from the page");
    let mut fastest = Duration::MAX;
    for n in 0..3 {
        let content = format!("through nginx {n}");
        let sent = Instant::now();
        let r = api
            .post(nginx.url("/api/messages/?addressee_username=px_bob"))
            .bearer_auth(&alice)
            .json(&serde_json::json!({ "content": content, "group_chat_id": null }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let event = stream
            .next_of(&["message"], Duration::from_secs(2))
            .await
            .expect("the event arrives");
        let took = sent.elapsed();
        assert_eq!(event.json()["content"], content);
        fastest = fastest.min(took);
    }
    assert!(
        fastest < Duration::from_millis(100),
        "the fastest of three events took {fastest:?}"
    );

    // Uploads: nginx refuses a body over the app's limit itself (the app would, but it
    // answers before reading the body, which nginx reports as 502); up to it, the app
    // judges.
    let limit = messenger::startup::MAX_BODY_BYTES;
    assert!(
        effective.contains(&format!("client_max_body_size {}k;", limit / 1024)),
        "nginx's body limit is the app's"
    );
    for (size, by_nginx) in [(limit - 1024, false), (limit + 1024, true)] {
        let content = "x".repeat(size);
        let r = api
            // Not a route that takes files (those have a location of their own).
            .post(nginx.url("/api/messages/seen"))
            .bearer_auth(&alice)
            .json(&serde_json::json!({ "content": content, "group_chat_id": null }))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        if by_nginx {
            assert_eq!(
                status,
                StatusCode::PAYLOAD_TOO_LARGE,
                "{size} bytes: {}",
                nginx.error_log()
            );
            assert!(
                body.contains("<center>nginx"),
                "{size} bytes: nginx answers: {body}"
            );
        } else {
            assert!(
                status.is_client_error() && status != StatusCode::PAYLOAD_TOO_LARGE,
                "{size} bytes: {status} {}",
                nginx.error_log()
            );
            let detail: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            assert!(
                !detail["detail"].is_null(),
                "{size} bytes: the app answers: {body}"
            );
        }
    }

    // The limiter sees the real client's address: forged X-Forwarded-For values do not
    // give one client more attempts (5 per address, LOGIN_ATTEMPTS_PER_MINUTE=1 × 5),
    // counted over both processes; another client is not held back by it.
    let forger = client(Ipv4Addr::new(127, 0, 0, 2));
    for n in 1..=6 {
        let r = forger
            .post(nginx.url("/api/auth/sign-in"))
            .header("X-Forwarded-For", format!("203.0.113.{n}"))
            .form(&[
                ("grant_type", "password"),
                ("username", &format!("nobody{n}@example.com")),
                ("password", "Wrong1password"),
            ])
            .send()
            .await
            .unwrap();
        let expected = if n < 6 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(r.status(), expected, "attempt {n}");
        if n == 6 {
            assert!(r.headers().contains_key("retry-after"));
        }
    }
    let r = client(Ipv4Addr::new(127, 0, 0, 3))
        .post(nginx.url("/api/auth/sign-in"))
        .form(&[
            ("grant_type", "password"),
            ("username", "nobody7@example.com"),
            ("password", "Wrong1password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "another client is not limited"
    );
    drop((first, second));
}

fn location_header(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

mod deploy_nginx_conf {
    use super::*;
    use crate::integration_test;

    integration_test! {
        #[needs(nginx)]
        async fn sqlite() {
            through_nginx(Backend::Sqlite).await;
        }

        #[needs(mysql, nginx)]
        async fn mysql() {
            through_nginx(Backend::MySql).await;
        }
    }
}
