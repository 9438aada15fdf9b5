//! Limits hold across processes: two servers on one database, attempts alternating
//! between them, reach 429 at the configured limit, not at twice it.

use reqwest::{Response, StatusCode};

use crate::{both_backends, helpers::*};

/// Sign-in 3 per minute per account (15 per IP); sign-up 3 per hour per IP; 5 messages a
/// minute per user. The client's address comes from `X-Forwarded-For`, as behind nginx.
const LIMITS: &[(&str, &str)] = &[
    ("LOGIN_ATTEMPTS_PER_MINUTE", "3"),
    ("SIGNUPS_PER_HOUR", "3"),
    ("SENDS_PER_MINUTE", "5"),
    ("TRUST_PROXY", "true"),
];

async fn two_processes(app: &TestApp) -> (TestApp, TestApp) {
    (
        spawn_app_on(app.database.clone(), LIMITS).await,
        spawn_app_on(app.database.clone(), LIMITS).await,
    )
}

async fn sign_in_from(app: &TestApp, ip: &str, login: &str, password: &str) -> Response {
    app.api
        .post(app.url("/api/auth/sign-in"))
        .header("x-forwarded-for", ip)
        .form(&[
            ("grant_type", "password"),
            ("username", login),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
}

async fn sign_up_from(app: &TestApp, ip: &str, username: &str) -> Response {
    app.api
        .post(app.url(&format!("/api/auth/sign-up?username={username}")))
        .header("x-forwarded-for", ip)
        .form(&[
            ("grant_type", "password"),
            ("username", &format!("{username}@example.com")),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap()
}

fn retry_after(r: &Response) -> u64 {
    r.headers()
        .get("retry-after")
        .expect("a 429 says when to retry")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

both_backends! {
    async fn sign_in_per_account_holds_across_processes(app) {
        let (a, b) = two_processes(&app).await;
        a.user("target").await;
        // Username and email are one account: they share its quota. Each attempt comes
        // from another address, so only the per-account limit can stop them.
        let logins = ["target", "target@example.com", "TARGET"];
        for (i, login) in logins.iter().enumerate() {
            let server = if i % 2 == 0 { &a } else { &b };
            let r = sign_in_from(server, &format!("10.1.0.{i}"), login, "Wrong1password").await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
        }
        let r = sign_in_from(&b, "10.1.0.9", "target@example.com", PASSWORD).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "the 4th attempt on either process");
        assert!((1..=60).contains(&retry_after(&r)));
        let r = sign_in_from(&a, "10.1.0.10", "target", PASSWORD).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        // Someone else's account is not locked out.
        a.user("bystander").await;
        let r = sign_in_from(&b, "10.1.0.11", "bystander@example.com", PASSWORD).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    async fn sign_in_per_ip_holds_across_processes(app) {
        let (a, b) = two_processes(&app).await;
        // 15 attempts from one address, each at another (unknown) account.
        for i in 0..15 {
            let server = if i % 2 == 0 { &a } else { &b };
            let r = sign_in_from(server, "192.0.2.7", &format!("nobody{i}"), "Wrong1password").await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
        }
        let r = sign_in_from(&b, "192.0.2.7", "nobody-else", "Wrong1password").await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "the 16th attempt from one address");
        assert!(retry_after(&r) >= 1);
        // Another address still gets through; an IPv6 neighbour in the same /64 does not
        // get a fresh quota.
        let r = sign_in_from(&a, "192.0.2.8", "nobody-else", "Wrong1password").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        for i in 0..15 {
            let server = if i % 2 == 0 { &a } else { &b };
            let ip = format!("2001:db8:5:6::{:x}", i + 1);
            let r = sign_in_from(server, &ip, &format!("v6-{i}"), "Wrong1password").await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "v6 attempt {i}");
        }
        let r = sign_in_from(&a, "2001:db8:5:6:ffff::1", "v6-last", "Wrong1password").await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "one /64 is one client");
    }

    async fn sign_up_per_ip_holds_across_processes(app) {
        let (a, b) = two_processes(&app).await;
        for i in 0..3 {
            let server = if i % 2 == 0 { &a } else { &b };
            let r = sign_up_from(server, "198.51.100.4", &format!("newcomer{i}")).await;
            assert_eq!(r.status(), StatusCode::CREATED, "sign-up {i}");
        }
        let before = app.count("user").await;
        let r = sign_up_from(&b, "198.51.100.4", "newcomer3").await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "the 4th sign-up in an hour");
        assert!(retry_after(&r) > 60, "the quota refills over the hour");
        assert_eq!(app.count("user").await, before, "a refused sign-up creates nothing");
        let r = sign_up_from(&a, "198.51.100.5", "newcomer3").await;
        assert_eq!(r.status(), StatusCode::CREATED, "another address may sign up");
    }

    async fn sends_per_user_hold_across_processes(app) {
        let (a, b) = two_processes(&app).await;
        let (alice, bob) = (a.user("alice").await, a.user("bob").await);
        a.befriend(&alice, &bob).await;
        for i in 0..5 {
            let server = if i % 2 == 0 { &a } else { &b };
            let r = server.send_dm(&alice, &bob, &format!("hello {i}")).await;
            assert_eq!(r.status(), StatusCode::CREATED, "message {i}");
        }
        let before = app.count("message").await;
        let r = b.send_dm(&alice, &bob, "one too many").await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "the 6th message in a minute");
        assert!((1..=12).contains(&retry_after(&r)), "one message every 12 s");
        let r = a.send_dm(&alice, &bob, "still too many").await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(app.count("message").await, before, "a refused message is not stored");
        // Bob's quota is his own.
        let r = b.send_dm(&bob, &alice, "hi alice").await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    async fn a_burst_of_sends_on_two_processes_gets_exactly_the_quota(app) {
        let (a, b) = two_processes(&app).await;
        let (carol, dave) = (a.user("carol").await, a.user("dave").await);
        a.befriend(&carol, &dave).await;
        // Twelve at once, half on each process: they share batches and race across
        // processes, and exactly five get through.
        let texts: Vec<String> = (0..12).map(|i| format!("burst {i}")).collect();
        let sends = texts.iter().enumerate().map(|(i, text)| {
            let server = if i % 2 == 0 { &a } else { &b };
            server.send_dm(&carol, &dave, text)
        });
        let statuses: Vec<StatusCode> = futures_util::future::join_all(sends)
            .await
            .iter()
            .map(|r| r.status())
            .collect();
        let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
        let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
        assert_eq!((created, refused), (5, 7), "{statuses:?}");
        assert_eq!(app.count("message").await, 5);
    }
}
