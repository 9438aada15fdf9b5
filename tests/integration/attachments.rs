//! Attachments, end to end, on both databases and both stores: a local directory, and a
//! real S3-compatible server (moto's server mode, started once per test run; skipped
//! with a note where it is not installed, a failure in CI).
//!
//! Each test gets the harness's app for its database, then starts servers of its own on
//! the same database with the file settings under test; the helpers below (users,
//! multipart bodies, images, the S3 server) are this file's own.

use std::{
    io::{Read, Write},
    path::PathBuf,
    process::{ChildStdin, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::Duration,
};

use messenger::{config::Config, db::Db, startup::Application, state::AppState};
use reqwest::{header, Client, Response, StatusCode};
use serde_json::{json, Value};

use crate::{both_backends, helpers::*, integration_test};

// --- an S3-compatible server for the whole run -------------------------------------------

/// moto's S3 endpoint, started on first use and stopped when the test binary exits (its
/// shell wrapper waits on a pipe that only closes then).
static MOTO: OnceLock<Option<Moto>> = OnceLock::new();

struct Moto {
    endpoint: String,
    /// Held, never written: the wrapper stops moto when this closes (at exit).
    _stdin: Mutex<ChildStdin>,
    _wrapper: Mutex<std::process::Child>,
}

fn moto_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        return Some(PathBuf::from(path));
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let tools = std::env::var("MESSENGER_TOOLS_DIR")
        .unwrap_or_else(|_| format!("{home}/.cache/messenger-ci-tools"));
    let in_venv = PathBuf::from(tools).join("venv/bin/moto_server");
    if in_venv.exists() {
        return Some(in_venv);
    }
    std::env::var("PATH").ok()?.split(':').find_map(|dir| {
        let p = PathBuf::from(dir).join("moto_server");
        p.exists().then_some(p)
    })
}

fn start_moto() -> Option<Moto> {
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty());
    let Some(binary) = moto_binary() else {
        assert!(
            !in_ci,
            "CI must have moto_server for the S3 tests: pip install \"moto[server]\" \
             (.ci/run installs it into ~/.cache/messenger-ci-tools/venv)"
        );
        eprintln!("moto_server not found (pip install \"moto[server]\"): S3 cases skipped");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & trap 'kill $!' EXIT; cat >/dev/null"#)
        .arg(&binary)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .spawn()
        .expect("sh runs");
    let stdin = child.stdin.take().expect("a pipe");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            assert!(!in_ci, "moto_server ({}) did not start", binary.display());
            eprintln!("moto_server did not start: S3 cases skipped");
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Moto {
        endpoint: format!("http://127.0.0.1:{port}"),
        _stdin: Mutex::new(stdin),
        _wrapper: Mutex::new(child),
    })
}

fn moto() -> Option<&'static str> {
    MOTO.get_or_init(start_moto)
        .as_ref()
        .map(|m| m.endpoint.as_str())
}

// --- servers with file storage -----------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Store {
    Local,
    S3,
}

/// A server on the harness app's database with its own file store; it runs until the
/// test ends.
struct Files {
    store: Store,
    address: String,
    state: AppState,
    upload_dir: Option<tempfile::TempDir>,
    s3: Option<(String, String)>,
    http: Client,
}

/// The stores to run against: the local directory always, S3 when moto runs.
fn stores() -> Vec<Store> {
    let mut stores = vec![Store::Local];
    if moto().is_some() {
        stores.push(Store::S3);
    }
    stores
}

async fn files_app(app: &TestApp, store: Store, extra: &[(&str, &str)]) -> Files {
    let mut vars: Vec<(String, String)> = [
        ("DATABASE_URL", "sqlite://not-opened.db"),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("JWT_SECRET", "attachment-tests-secret-0123456789"),
        ("ARGON2_MEMORY_KIB", "1024"),
        ("ARGON2_ITERATIONS", "1"),
        ("ARGON2_PARALLELISM", "1"),
        ("PRESENCE_GRACE_SECONDS", "1"),
        ("EVENT_POLL_MILLISECONDS", "25"),
        ("SIGNUPS_PER_HOUR", "10000"),
        ("LOGIN_ATTEMPTS_PER_MINUTE", "1000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut upload_dir = None;
    let mut s3 = None;
    match store {
        Store::Local => {
            let dir = tempfile::tempdir().unwrap();
            vars.push(("UPLOAD_DIR".into(), dir.path().display().to_string()));
            upload_dir = Some(dir);
        }
        Store::S3 => {
            let endpoint = moto().expect("moto runs").to_string();
            let bucket = format!("t-{}", uuid::Uuid::new_v4().simple());
            let created = Client::new()
                .put(format!("{endpoint}/{bucket}"))
                .send()
                .await
                .unwrap();
            assert!(
                created.status().is_success(),
                "bucket {bucket}: {created:?}"
            );
            for (k, v) in [
                ("S3_BUCKET", bucket.as_str()),
                ("S3_REGION", "us-east-1"),
                ("S3_ENDPOINT", endpoint.as_str()),
                ("S3_ACCESS_KEY_ID", "testing"),
                ("S3_SECRET_ACCESS_KEY", "testing"),
            ] {
                vars.push((k.into(), v.into()));
            }
            s3 = Some((endpoint, bucket));
        }
    }
    for (k, v) in extra {
        vars.push((k.to_string(), v.to_string()));
    }
    let config = Config::from_lookup(|k| {
        vars.iter()
            .rev()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    })
    .expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Application::build_with(config, app.db.clone(), listener)
        .await
        .expect("the app builds");
    let address = format!("http://127.0.0.1:{}", server.port());
    let state = server.state().clone();
    // Runs until the test's runtime ends. Not stopped before: stopping closes the
    // database pool, which this server shares with the harness's app.
    tokio::spawn(server.run_until_stopped(std::future::pending()));
    Files {
        store,
        address,
        state,
        upload_dir,
        s3,
        http: Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    }
}

#[derive(Debug, Clone)]
struct User {
    name: String,
    token: String,
}

impl Files {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A user name unique to this store's run (both stores share the database).
    fn name(&self, base: &str) -> String {
        format!("{base}{}", if self.store == Store::S3 { "_s3" } else { "" })
    }

    async fn user(&self, base: &str) -> User {
        let name = self.name(base);
        let r = self
            .http
            .post(self.url(&format!("/api/auth/sign-up?username={name}")))
            .form(&[
                ("grant_type", "password"),
                ("username", &format!("{name}@example.com")),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "sign-up of {name}");
        let token = r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        User { name, token }
    }

    async fn get(&self, token: &str, path: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn post_json(&self, token: &str, path: &str, body: &Value) -> Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn befriend(&self, a: &User, b: &User) {
        let r = self
            .post_json(
                &a.token,
                &format!("/api/friends/requests?username={}", b.name),
                &json!({}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = self
            .post_json(
                &b.token,
                &format!("/api/friends/requests/accept?requester_username={}", a.name),
                &json!({}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    async fn post_multipart(&self, token: &str, path: &str, parts: &[Part]) -> Response {
        let (content_type, body) = multipart(parts);
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Uploads files for a later send; the attachments, or the response that refused them.
    async fn upload(&self, user: &User, parts: &[Part]) -> Result<Vec<Value>, (StatusCode, Value)> {
        let r = self
            .post_multipart(&user.token, "/api/attachments", parts)
            .await;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        match status {
            StatusCode::CREATED => Ok(body.as_array().unwrap().clone()),
            _ => Err((status, body)),
        }
    }

    /// Objects in the store.
    async fn stored_objects(&self) -> usize {
        match (&self.upload_dir, &self.s3) {
            (Some(dir), _) => count_files(dir.path()),
            (_, Some((endpoint, bucket))) => {
                let listing = self
                    .http
                    .get(format!("{endpoint}/{bucket}?list-type=2"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                listing.matches("<Key>").count()
            }
            _ => unreachable!(),
        }
    }

    async fn attachment_rows(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM attachment";
        match &self.state.db {
            Db::MySql(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
            Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        }
    }

    /// Nothing stored at all: no row, no object.
    async fn assert_empty(&self, what: &str) {
        assert_eq!(self.attachment_rows().await, 0, "{what}: rows left");
        assert_eq!(self.stored_objects().await, 0, "{what}: objects left");
    }
}

fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        count_files(&path)
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

// --- request bodies and files ------------------------------------------------------------

struct Part {
    name: &'static str,
    file_name: Option<String>,
    data: Vec<u8>,
}

fn field(name: &'static str, value: &str) -> Part {
    Part {
        name,
        file_name: None,
        data: value.as_bytes().to_vec(),
    }
}

fn file(name: &str, data: impl Into<Vec<u8>>) -> Part {
    Part {
        name: "file",
        file_name: Some(name.to_string()),
        data: data.into(),
    }
}

fn multipart(parts: &[Part]) -> (String, Vec<u8>) {
    let boundary = format!("----attachments{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::new();
    for part in parts {
        write!(
            body,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"",
            part.name
        )
        .unwrap();
        if let Some(file_name) = &part.file_name {
            // The client's type is a lie on purpose: the server must not believe it.
            write!(
                body,
                "; filename=\"{file_name}\"\r\nContent-Type: image/png"
            )
            .unwrap();
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(&part.data);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A `width` × `height` JPEG, red on the left and blue on the right, with an EXIF block
/// saying "rotate 90° clockwise" and a GPS position.
fn jpeg_with_exif(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, _| {
        if x < width / 2 {
            image::Rgb([220, 20, 20])
        } else {
            image::Rgb([20, 20, 220])
        }
    });
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    // TIFF, little-endian: IFD0 with Orientation = 6 and a GPS IFD pointer; the GPS IFD
    // with one ASCII-ish entry holding GPS_SECRET.
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    tiff.extend_from_slice(&2u16.to_le_bytes());
    tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]);
    tiff.extend_from_slice(&[0x25, 0x88, 4, 0, 1, 0, 0, 0]);
    tiff.extend_from_slice(&38u32.to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&[0x1B, 0x00, 7, 0]);
    tiff.extend_from_slice(&(GPS_SECRET.len() as u32).to_le_bytes());
    tiff.extend_from_slice(&56u32.to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(tiff.len(), 56);
    tiff.extend_from_slice(GPS_SECRET);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

const GPS_SECRET: &[u8] = b"GPS 52.5200N 13.4050E home";

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(width, height, |x, y| {
        image::Rgba([(x * 7) as u8, (y * 13) as u8, ((x ^ y) * 3) as u8, 255])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A PNG whose header claims `width` × `height` (a decompression bomb's), checksum right.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = png(1, 1);
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let mut crc = 0xFFFF_FFFFu32;
    for &b in &bytes[12..29] {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    bytes[29..33].copy_from_slice(&(!crc).to_be_bytes());
    bytes
}

const PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

fn has(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The next `message_edited` event on a user's API stream.
async fn next_edit(events: &mut Response, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buffer = String::new();
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if frame.lines().any(|l| l.trim() == "event: message_edited") {
                let data: String = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                return serde_json::from_str(&data).ok();
            }
        }
        let chunk = tokio::time::timeout_at(deadline, events.chunk())
            .await
            .ok()?
            .ok()??;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

// --- the tests ---------------------------------------------------------------------------

both_backends! {
    async fn an_image_is_sent_shown_to_members_only_and_deleted_with_its_message(app) {
        for store in stores() {
            let f = files_app(&app, store, &[]).await;
            let (alice, bob, eve) = (f.user("alice").await, f.user("bob").await, f.user("eve").await);
            f.befriend(&alice, &bob).await;
            let mut bob_events = f.http.get(f.url("/api/events")).bearer_auth(&bob.token).send().await.unwrap();

            // Upload: the type from the bytes, EXIF orientation applied (60 × 40 turns to 40 × 60).
            let uploaded = f.upload(&alice, &[file("holiday.jpg", jpeg_with_exif(60, 40))]).await.unwrap();
            let a = &uploaded[0];
            assert_eq!((a["type"].as_str(), a["kind"].as_str()), (Some("image/jpeg"), Some("image")), "{store:?}");
            assert_eq!((a["width"].as_i64(), a["height"].as_i64()), (Some(40), Some(60)));
            let id = a["id"].as_str().unwrap().to_string();
            assert_eq!(id.len(), 32);
            // Before it is sent, only its uploader sees it.
            assert_eq!(f.get(&alice.token, &format!("/api/attachments/{id}")).await.status(), StatusCode::OK);
            assert_eq!(f.get(&bob.token, &format!("/api/attachments/{id}")).await.status(), StatusCode::NOT_FOUND);

            // Sent without text: the message lists it; bob's stream brings it.
            let r = f.post_json(&alice.token, &format!("/api/messages/?addressee_username={}", bob.name),
                &json!({ "content": "", "attachment_ids": [id] })).await;
            assert_eq!(r.status(), StatusCode::CREATED);
            let m: Value = r.json().await.unwrap();
            assert_eq!(m["content"], "");
            assert_eq!(m["attachments"][0]["id"], id.as_str());
            assert_eq!(m["attachments"][0]["name"], "holiday.jpg");
            let live = next_edit(&mut bob_events, Duration::from_secs(10)).await.expect("message_edited on bob's stream");
            assert_eq!(live["message_id"], m["message_id"]);
            assert_eq!(live["attachments"][0]["thumbnail_url"], format!("/api/attachments/{id}/thumbnail"));
            // The same id cannot be sent twice.
            let again = f.post_json(&alice.token, &format!("/api/messages/?addressee_username={}", bob.name),
                &json!({ "content": "again", "attachment_ids": [id] })).await;
            assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY);

            // Bob gets our re-encoding: upright, inline, without the EXIF and its GPS position.
            let r = f.get(&bob.token, &format!("/api/attachments/{id}")).await;
            assert_eq!(r.status(), StatusCode::OK);
            let h = r.headers().clone();
            assert_eq!(h[header::CONTENT_TYPE], "image/jpeg");
            assert!(h[header::CONTENT_DISPOSITION].to_str().unwrap().starts_with("inline"));
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert!(h[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("sandbox"));
            let etag = h[header::ETAG].to_str().unwrap().to_string();
            let bytes = r.bytes().await.unwrap();
            assert!(!has(&bytes, b"Exif") && !has(&bytes, GPS_SECRET), "metadata stripped");
            let shown = image::load_from_memory(&bytes).unwrap().to_rgb8();
            assert_eq!(shown.dimensions(), (40, 60));
            let (top, bottom) = (shown.get_pixel(20, 5), shown.get_pixel(20, 55));
            assert!(top[0] > 150 && bottom[2] > 150, "red on top, blue below: turned clockwise ({top:?}, {bottom:?})");
            // The browser's copy is asked about again, and still allowed: 304.
            let r = f.http.get(f.url(&format!("/api/attachments/{id}"))).bearer_auth(&bob.token)
                .header(header::IF_NONE_MATCH, &etag).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
            let r = f.get(&bob.token, &format!("/api/attachments/{id}/download")).await;
            assert!(r.headers()[header::CONTENT_DISPOSITION].to_str().unwrap().starts_with("attachment"));
            let r = f.get(&bob.token, &format!("/api/attachments/{id}/thumbnail")).await;
            assert_eq!(r.status(), StatusCode::OK);
            let thumb = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
            assert!(thumb.width() <= 320 && thumb.height() <= 320);

            // Not a member, not signed in, not an id: the same 404 (or 401).
            for path in [format!("/api/attachments/{id}"), format!("/api/attachments/{id}/thumbnail"), format!("/api/attachments/{id}/download")] {
                assert_eq!(f.get(&eve.token, &path).await.status(), StatusCode::NOT_FOUND, "{path}");
                assert_eq!(f.http.get(f.url(&path)).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
            }
            assert_eq!(f.get(&bob.token, "/api/attachments/0123456789abcdef0123456789abcdef").await.status(), StatusCode::NOT_FOUND);
            assert_eq!(f.get(&bob.token, "/api/attachments/..%2F..%2Fetc%2Fpasswd").await.status(), StatusCode::NOT_FOUND);

            // History lists it.
            let page: Value = f.get(&bob.token, &format!("/api/messages/?friend_username={}&limit=10", alice.name)).await.json().await.unwrap();
            assert_eq!(page["results"][0]["attachments"][0]["id"], id.as_str());
            assert_eq!(f.stored_objects().await, 2, "the image and its thumbnail");

            // Deleting the message deletes its files.
            let r = f.http.delete(f.url(&format!("/api/messages/{}", m["message_id"]))).bearer_auth(&alice.token).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(f.get(&bob.token, &format!("/api/attachments/{id}")).await.status(), StatusCode::NOT_FOUND);
            f.assert_empty("after the message was deleted").await;
        }
    }

    async fn scripts_send_files_in_one_multipart_request_and_downloads_stay_downloads(app) {
        for store in stores() {
            let f = files_app(&app, store, &[]).await;
            let (alice, bob) = (f.user("alice").await, f.user("bob").await);
            f.befriend(&alice, &bob).await;
            let path = format!("/api/messages/?addressee_username={}", bob.name);
            let r = f.post_multipart(&alice.token, &path, &[
                field("content", "the report, and some notes"),
                file("report.pdf", PDF),
                // Claims to be an image by name and header; the bytes say text.
                file("photo.png", "not a picture at all"),
                file("page.html", "<!DOCTYPE html><html><script>alert(1)</script></html>"),
                file("résumé 2024.txt", "CV"),
            ]).await;
            assert_eq!(r.status(), StatusCode::CREATED, "{store:?}");
            let m: Value = r.json().await.unwrap();
            assert_eq!(m["content"], "the report, and some notes");
            let list = m["attachments"].as_array().unwrap();
            let kinds: Vec<(&str, &str, &str)> = list.iter()
                .map(|a| (a["name"].as_str().unwrap(), a["type"].as_str().unwrap(), a["kind"].as_str().unwrap()))
                .collect();
            assert_eq!(kinds, [
                ("report.pdf", "application/pdf", "file"),
                ("photo.png", "text/plain; charset=utf-8", "file"),
                ("page.html", "application/octet-stream", "file"),
                ("résumé 2024.txt", "text/plain; charset=utf-8", "file"),
            ]);
            assert!(list.iter().all(|a| a.get("thumbnail_url").is_none() && a.get("width").is_none()));
            for a in list {
                let r = f.get(&bob.token, a["url"].as_str().unwrap()).await;
                assert_eq!(r.status(), StatusCode::OK);
                let disposition = r.headers()[header::CONTENT_DISPOSITION].to_str().unwrap().to_string();
                assert!(disposition.starts_with("attachment;"), "{disposition}");
                assert_eq!(r.headers()[header::CONTENT_TYPE], a["type"].as_str().unwrap());
                assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
                assert_eq!(r.bytes().await.unwrap().len() as i64, a["size"].as_i64().unwrap());
            }
            let r = f.get(&bob.token, list[3]["url"].as_str().unwrap()).await;
            assert!(r.headers()[header::CONTENT_DISPOSITION].to_str().unwrap().contains("filename*=UTF-8''r%C3%A9sum%C3%A9%202024.txt"));
            // A repeated send with the same key stores nothing new.
            let keyed = [field("content", "once"), field("client_key", "k-1"), file("a.pdf", PDF)];
            let first = f.post_multipart(&alice.token, &path, &keyed).await;
            assert_eq!(first.status(), StatusCode::CREATED);
            let objects = f.stored_objects().await;
            let second = f.post_multipart(&alice.token, &path, &keyed).await;
            assert_eq!(second.status(), StatusCode::OK);
            let second: Value = second.json().await.unwrap();
            assert_eq!(second["attachments"].as_array().unwrap().len(), 1);
            assert_eq!(f.stored_objects().await, objects);
            // A send that is refused stores nothing.
            let stranger = f.user("stranger").await;
            let before = (f.attachment_rows().await, f.stored_objects().await);
            let r = f.post_multipart(&alice.token, &format!("/api/messages/?addressee_username={}", stranger.name),
                &[field("content", "hi"), file("a.pdf", PDF)]).await;
            assert!(r.status().is_client_error());
            assert_eq!((f.attachment_rows().await, f.stored_objects().await), before);
        }
    }

    /// Files and a reply (and formatting) in one message: both in the answer and in the
    /// history; a reply that may not be made stores none of the files.
    async fn a_message_carries_files_and_a_reply_at_once(app) {
        let f = files_app(&app, Store::Local, &[]).await;
        let (alice, bob) = (f.user("alice").await, f.user("bob").await);
        f.befriend(&alice, &bob).await;
        let r = f.post_json(&bob.token, &format!("/api/messages/?addressee_username={}", alice.name), &json!({ "content": "send me the report" })).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let original: Value = r.json().await.unwrap();
        let id = original["message_id"].to_string();
        let path = format!("/api/messages/?addressee_username={}", bob.name);
        let r = f.post_multipart(&alice.token, &format!("{path}&render=html"), &[
            field("content", "here it is, **final**"),
            field("reply_to_message_id", &id),
            file("report.pdf", PDF),
        ]).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let m: Value = r.json().await.unwrap();
        assert_eq!(m["attachments"].as_array().unwrap().len(), 1, "{m}");
        assert_eq!(m["reply_to_message_id"], original["message_id"]);
        assert_eq!(m["reply_to"]["message_id"], original["message_id"]);
        assert!(m["html"].as_str().unwrap().contains("<strong>final</strong>"), "{m}");
        let page: Value = f.get(&bob.token, &format!("/api/messages/?friend_username={}&limit=1", alice.name)).await.json().await.unwrap();
        let last = &page["results"][0];
        assert_eq!(last["message_id"], m["message_id"]);
        assert_eq!(last["attachments"].as_array().unwrap().len(), 1, "{last}");
        assert_eq!(last["reply_to"]["excerpt"], "send me the report");
        let before = (f.attachment_rows().await, f.stored_objects().await);
        let r = f.post_multipart(&alice.token, &path, &[
            field("content", "x"),
            field("reply_to_message_id", "999999"),
            file("a.pdf", PDF),
        ]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!((f.attachment_rows().await, f.stored_objects().await), before);
    }

    async fn a_group_s_files_are_for_its_current_members(app) {
        for store in stores() {
            let f = files_app(&app, store, &[]).await;
            let (gina, hank, ivy) = (f.user("gina").await, f.user("hank").await, f.user("ivy").await);
            f.befriend(&gina, &hank).await;
            f.befriend(&gina, &ivy).await;
            let g: Value = f.post_json(&gina.token, "/api/group_chats/",
                &json!({ "group_chat_name": "trip", "usernames": [hank.name, ivy.name] })).await.json().await.unwrap();
            let gid = g["group_chat_id"].as_i64().unwrap();
            let r = f.post_multipart(&gina.token, "/api/messages/", &[
                field("group_chat_id", &gid.to_string()), file("map.png", png(64, 48)),
            ]).await;
            assert_eq!(r.status(), StatusCode::CREATED, "{store:?}");
            let m: Value = r.json().await.unwrap();
            let url = m["attachments"][0]["url"].as_str().unwrap().to_string();
            assert_eq!(m["attachments"][0]["type"], "image/png");
            for u in [&gina, &hank, &ivy] {
                assert_eq!(f.get(&u.token, &url).await.status(), StatusCode::OK, "{}", u.name);
            }
            let r = f.http.delete(f.url(&format!("/api/group_chats/{gid}/members/{}", ivy.name))).bearer_auth(&gina.token).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(f.get(&ivy.token, &url).await.status(), StatusCode::NOT_FOUND, "removed: no longer");
            let r = f.post_json(&hank.token, &format!("/api/group_chats/{gid}/leave"), &json!({})).await;
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(f.get(&hank.token, &url).await.status(), StatusCode::NOT_FOUND, "left: no longer");
            assert_eq!(f.get(&gina.token, &url).await.status(), StatusCode::OK);
        }
    }

    async fn bad_uploads_are_refused_clearly_and_store_nothing(app) {
        for store in stores() {
            let f = files_app(&app, store, &[("MAX_UPLOAD_MB", "1")]).await;
            let alice = f.user("alice").await;
            let refusals: Vec<(&str, Vec<Part>, StatusCode, &str)> = vec![
                ("too large", vec![file("big.bin", vec![7u8; 1_200_000])], StatusCode::PAYLOAD_TOO_LARGE, "larger than 1 MB"),
                ("too many", (0..11).map(|i| file(&format!("{i}.txt"), "x")).collect(), StatusCode::UNPROCESSABLE_ENTITY, "at most 10 files"),
                ("empty", vec![file("empty.txt", "")], StatusCode::UNPROCESSABLE_ENTITY, "is empty"),
                ("a bomb", vec![file("bomb.png", png_claiming(20_000, 20_000))], StatusCode::UNPROCESSABLE_ENTITY, "too large to show"),
                ("truncated", vec![file("cut.png", { let p = png(200, 200); p[..p.len() / 2].to_vec() })], StatusCode::UNPROCESSABLE_ENTITY, "damaged"),
                ("a path", vec![file("../../etc/passwd", "x")], StatusCode::UNPROCESSABLE_ENTITY, "path"),
                ("a backslash path", vec![file("..\\evil.txt", "x")], StatusCode::UNPROCESSABLE_ENTITY, "path"),
                ("a control character", vec![file("a\tb.txt", "x")], StatusCode::UNPROCESSABLE_ENTITY, "control"),
                ("a control character in the part's header", vec![file("a\u{1}b.txt", "x")], StatusCode::UNPROCESSABLE_ENTITY, "control"),
                ("no file", vec![field("content", "hi")], StatusCode::UNPROCESSABLE_ENTITY, "no file"),
                // A good file before a bad one: all or nothing.
                ("one bad of two", vec![file("ok.pdf", PDF), file("bad\u{7f}.pdf", PDF)], StatusCode::UNPROCESSABLE_ENTITY, "control"),
            ];
            for (what, parts, status, says) in refusals {
                let (s, body) = f.upload(&alice, &parts).await.expect_err(what);
                assert_eq!(s, status, "{what} ({store:?}): {body}");
                assert!(body.to_string().contains(says), "{what}: {body}");
                f.assert_empty(what).await;
            }
            // Not multipart at all.
            let r = f.post_json(&alice.token, "/api/attachments", &json!({ "file": "x" })).await;
            assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
            // A body declared larger than ten files at the limit is refused before it is read.
            let address = f.address.trim_start_matches("http://").to_string();
            let mut stream = std::net::TcpStream::connect(&address).unwrap();
            write!(stream, "POST /api/attachments HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
                Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 20000000\r\n\r\n", alice.token).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut answer = [0u8; 12];
            stream.read_exact(&mut answer).unwrap();
            assert_eq!(&answer, b"HTTP/1.1 413");
            drop(stream);
            // Other routes keep their small limit for multipart bodies too.
            let (ct, body) = multipart(&[file("x.bin", vec![1u8; 400_000])]);
            let r = f.http.post(f.url("/api/messages/seen")).bearer_auth(&alice.token)
                .header(header::CONTENT_TYPE, ct).body(body).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
            // An upload cut off midway leaves nothing.
            let (ct, body) = multipart(&[file("half.bin", vec![3u8; 900_000])]);
            let head = format!(
                "POST /api/attachments HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n", alice.token, body.len());
            let mut stream = std::net::TcpStream::connect(&address).unwrap();
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body[..body.len() / 2]).unwrap();
            stream.flush().unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(stream);
            tokio::time::sleep(Duration::from_millis(500)).await;
            f.assert_empty("an aborted upload").await;
        }
    }

    async fn unsent_uploads_and_files_of_vanished_messages_are_cleaned_up(app) {
        for store in stores() {
            let f = files_app(&app, store, &[]).await;
            let (alice, bob) = (f.user("alice").await, f.user("bob").await);
            f.befriend(&alice, &bob).await;
            let unsent = f.upload(&alice, &[file("draft.png", png(20, 20))]).await.unwrap();
            let sent = f.upload(&alice, &[file("sent.pdf", PDF)]).await.unwrap();
            let r = f.post_json(&alice.token, &format!("/api/messages/?addressee_username={}", bob.name),
                &json!({ "content": "here", "attachment_ids": [sent[0]["id"]] })).await;
            let message: Value = r.json().await.unwrap();
            let attachments = &f.state.attachments;
            assert_eq!(attachments.sweep(&f.state.db, Duration::from_secs(3600)).await.unwrap(), 0, "young and sent: kept");
            assert_eq!(f.stored_objects().await, 3);
            // An hour later the unsent one goes; the sent one stays.
            assert_eq!(attachments.sweep(&f.state.db, Duration::ZERO).await.unwrap(), 1, "{store:?}");
            assert_eq!(f.get(&alice.token, &format!("/api/attachments/{}", unsent[0]["id"].as_str().unwrap())).await.status(), StatusCode::NOT_FOUND);
            assert_eq!(f.stored_objects().await, 1);
            assert_eq!(f.attachment_rows().await, 1);
            // A message gone by another way than its delete (e.g. its sender's account):
            // the clean-up finds its files.
            let sql = "DELETE FROM message WHERE message_id = ?";
            let id = message["message_id"].as_i64().unwrap();
            match &f.state.db {
                Db::MySql(pool) => { sqlx::query(sql).bind(id).execute(pool).await.unwrap(); }
                Db::Sqlite(pool) => { sqlx::query(sql).bind(id).execute(pool).await.unwrap(); }
            }
            assert_eq!(attachments.sweep(&f.state.db, Duration::from_secs(3600)).await.unwrap(), 1);
            f.assert_empty("after the clean-up").await;
            // Cancelling an upload deletes it at once.
            let cancelled = f.upload(&alice, &[file("oops.txt", "oops")]).await.unwrap();
            let path = format!("/api/attachments/{}", cancelled[0]["id"].as_str().unwrap());
            assert_eq!(f.http.delete(f.url(&path)).bearer_auth(&bob.token).send().await.unwrap().status(), StatusCode::NOT_FOUND);
            assert_eq!(f.http.delete(f.url(&path)).bearer_auth(&alice.token).send().await.unwrap().status(), StatusCode::NO_CONTENT);
            f.assert_empty("after a cancel").await;
        }
    }

    async fn the_composer_posts_files_without_javascript(app) {
        let f = files_app(&app, Store::Local, &[]).await;
        let (alice, bob) = (f.user("alice").await, f.user("bob").await);
        f.befriend(&alice, &bob).await;
        let browser = Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let login = browser.get(f.url("/login")).send().await.unwrap().text().await.unwrap();
        let r = browser.post(f.url("/login"))
            .form(&[("login", alice.name.as_str()), ("password", PASSWORD), ("csrf_token", &csrf_token(&login))])
            .send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let page = browser.get(f.url(&format!("/chats/@{}", bob.name))).send().await.unwrap().text().await.unwrap();
        assert!(page.contains(r#"enctype="multipart/form-data""#) && page.contains(r#"type="file" name="files" multiple"#));
        let token = csrf_token(&page);
        let post = |parts: Vec<Part>| {
            let (ct, body) = multipart(&parts);
            browser.post(f.url(&format!("/chats/@{}/messages", bob.name))).header(header::CONTENT_TYPE, ct).body(body).send()
        };
        // The token must come first; without it, refused.
        let r = post(vec![field("content", "no token"), Part { name: "files", ..file("a.pdf", PDF) }]).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = post(vec![
            field("csrf_token", &token),
            field("content", "a photo"),
            Part { name: "files", ..file("cat.png", png(500, 300)) },
            // An input with nothing chosen sends an empty part: ignored.
            Part { name: "files", ..file("", "") },
        ]).await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let html = browser.get(f.url(&format!("/chats/@{}", bob.name))).send().await.unwrap().text().await.unwrap();
        assert!(html.contains(r#"class="attachment-thumb""#), "the page shows the thumbnail");
        assert!(html.contains(r#"width="320" height="192""#), "{html}");
        // Files that the page's script uploaded are sent by id, with a plain form.
        let uploaded = f.upload(&alice, &[file("notes.pdf", PDF)]).await.unwrap();
        let r = browser.post(f.url(&format!("/chats/@{}/messages", bob.name)))
            .form(&[("csrf_token", token.as_str()), ("content", ""), ("attachment_ids", uploaded[0]["id"].as_str().unwrap())])
            .send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let html = browser.get(f.url(&format!("/chats/@{}", bob.name))).send().await.unwrap().text().await.unwrap();
        let card = format!("PDF · {} bytes", PDF.len());
        assert!(html.contains("notes.pdf") && html.contains(&card) && html.contains(r#"class="attachment-file""#), "{html}");
        // Empty text without files is still refused.
        let r = browser.post(f.url(&format!("/chats/@{}/messages", bob.name)))
            .form(&[("csrf_token", token.as_str()), ("content", " ")]).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
}

// --- in a browser ------------------------------------------------------------------------

use crate::browser::{wait_for, Driver};

/// Polls `script` until it returns true.
async fn wait_until(b: &fantoccini::Client, what: &str, script: &str) {
    crate::browser::wait_until(b, what, script, crate::browser::WAIT).await
}

integration_test! {
    #[needs(browser)]
    async fn browser_images_go_live_open_in_the_lightbox_and_files_download() {
        let mut driver = Driver::start().await;
        let app = spawn_app(Backend::Sqlite).await;
        let f = files_app(&app, Store::Local, &[]).await;
        let (alice_api, bob_api) = (f.user("alice").await, f.user("bob").await);
        f.befriend(&alice_api, &bob_api).await;
        let dir = tempfile::tempdir().unwrap();
        let (first, second, pdf) = (
            dir.path().join("sunset.png"),
            dir.path().join("beach.jpg"),
            dir.path().join("report.pdf"),
        );
        std::fs::write(&first, png(640, 480)).unwrap();
        std::fs::write(&second, jpeg_with_exif(300, 200)).unwrap();
        std::fs::write(&pdf, PDF).unwrap();

        let alice = driver.browser().await;
        let bob = driver.browser().await;
        for (b, user, other) in [(&alice, &alice_api, &bob_api), (&bob, &bob_api, &alice_api)] {
            crate::browser::sign_in(b, &f.url(""), &user.name).await;
            b.goto(&f.url(&format!("/chats/@{}", other.name)))
                .await
                .unwrap();
            wait_for(b, "#composer .attach.js").await;
        }
        tokio::time::sleep(Duration::from_millis(700)).await; // bob's stream connects

        // Alice picks two images: each uploads with its own progress, then is ready.
        let input = wait_for(&alice, "#composer-files").await;
        input
            .send_keys(&format!("{}\n{}", first.display(), second.display()))
            .await
            .unwrap();
        wait_until(
            &alice,
            "both uploads ready",
            "return document.querySelectorAll('.attach-item.ready').length === 2",
        )
        .await;
        wait_for(&alice, "#composer-input")
            .await
            .send_keys("look at these")
            .await
            .unwrap();
        wait_for(&alice, "#composer button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
        wait_until(
            &alice,
            "the composer emptied",
            "return document.querySelectorAll('.attach-item').length === 0",
        )
        .await;

        // Bob sees both thumbnails arrive live, loaded.
        wait_until(
            &bob,
            "two thumbnails, loaded",
            "const i = document.querySelectorAll('ol.messages img.attachment-thumb'); \
             return i.length === 2 && [...i].every(img => img.complete && img.naturalWidth > 0)",
        )
        .await;
        // The first opens full size; the arrow keys move between them; Escape closes.
        wait_for(&bob, "ol.messages a.attachment-image")
            .await
            .click()
            .await
            .unwrap();
        wait_until(
            &bob,
            "the lightbox shows the full image",
            "const b = document.querySelector('.lightbox'); const img = b && b.querySelector('img'); \
             return !!b && !b.hidden && img.complete && img.naturalWidth === 640",
        )
        .await;
        let info = wait_for(&bob, ".lightbox-info").await.text().await.unwrap();
        assert!(info.starts_with("1 of 2"), "{info}");
        bob.active_element()
            .await
            .unwrap()
            .send_keys("\u{E014}")
            .await
            .unwrap(); // →
        wait_until(
            &bob,
            "the second image, upright",
            "const img = document.querySelector('.lightbox img'); \
             return img.complete && img.naturalWidth === 200 && img.naturalHeight === 300",
        )
        .await;
        bob.active_element()
            .await
            .unwrap()
            .send_keys("\u{E00C}")
            .await
            .unwrap(); // Escape
        wait_until(
            &bob,
            "the lightbox closed",
            "return document.querySelector('.lightbox').hidden",
        )
        .await;

        // A PDF: a card on bob's side whose link downloads it.
        wait_for(&alice, "#composer-files")
            .await
            .send_keys(&pdf.display().to_string())
            .await
            .unwrap();
        wait_until(
            &alice,
            "the PDF uploaded",
            "return document.querySelectorAll('.attach-item.ready').length === 1",
        )
        .await;
        wait_for(&alice, "#composer button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
        let card = wait_for(&bob, "ol.messages a.attachment-file").await;
        assert!(card.text().await.unwrap().contains("report.pdf"));
        let download = bob.execute_async(
            "const done = arguments[arguments.length - 1]; \
             const a = document.querySelector('ol.messages a.attachment-file'); \
             fetch(a.href).then(r => r.arrayBuffer().then(b => done([r.status, r.headers.get('content-disposition'), r.headers.get('content-type'), b.byteLength, a.hasAttribute('download')])))",
            vec![],
        ).await.unwrap();
        assert_eq!(download[0], 200);
        assert!(
            download[1]
                .as_str()
                .unwrap()
                .starts_with("attachment; filename=\"report.pdf\""),
            "{download}"
        );
        assert_eq!(download[2], "application/pdf");
        assert_eq!(download[3], PDF.len());
        assert_eq!(download[4], true);
        alice.close().await.unwrap();
        bob.close().await.unwrap();
    }
}
