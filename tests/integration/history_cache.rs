//! The history cache (`HISTORY_CACHE_MB`): the latest page from memory, as correct as the
//! database. Two processes with the cache on one database, and a third with it off as
//! the database's own answer; writes made through either show on the other within a
//! tailer tick, and on their own at once; access is checked on every read.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{both_backends, helpers::*};

/// The database's answer: a process that caches nothing.
const NO_CACHE: &[(&str, &str)] = &[("HISTORY_CACHE_MB", "0")];
/// How long a change may take to reach another process (a tick is 25 ms in the tests).
const CONVERGE: Duration = Duration::from_secs(3);

fn direct(friend: &ApiUser, limit: usize) -> String {
    format!(
        "/api/messages/?friend_username={}&limit={limit}",
        friend.username
    )
}

fn group(id: i64, limit: usize) -> String {
    format!("/api/group_chats/{id}/messages?limit={limit}")
}

async fn read(app: &TestApp, user: &ApiUser, path: &str) -> (StatusCode, Value) {
    let r = app.get(&user.token, path).await;
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls `app` until its answer equals `want`'s, for at most [`CONVERGE`]; the last
/// answers when they never agreed.
async fn converges(
    app: &TestApp,
    reference: &TestApp,
    user: &ApiUser,
    path: &str,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let want = read(reference, user, path).await;
        let got = read(app, user, path).await;
        if got == want {
            return Ok(());
        }
        if started.elapsed() > CONVERGE {
            return Err(format!(
                "{} {path} as {}: cached {got:?}\n database {want:?}",
                app.address, user.username
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send(app: &TestApp, from: &ApiUser, to: &str, content: &str) -> Value {
    let (path, body) = match to.parse::<i64>() {
        Ok(group) => (
            "/api/messages/".to_string(),
            json!({ "content": content, "group_chat_id": group }),
        ),
        Err(_) => (
            format!("/api/messages/?addressee_username={to}"),
            json!({ "content": content }),
        ),
    };
    let r = app.post_json(&from.token, &path, &body).await;
    assert_eq!(r.status(), StatusCode::CREATED, "send {content}");
    r.json().await.unwrap()
}

/// Changes a message's text behind every process's back: no event, so only a process
/// that reads the database sees it. Shows which answers came from a cache.
async fn rewrite_silently(app: &TestApp, message_id: i64, content: &str) {
    let sql = "UPDATE message SET content = ? WHERE message_id = ?";
    messenger::db_run!(&app.db, |pool| sqlx::query(sql)
        .bind(content)
        .bind(message_id)
        .execute(pool)
        .await
        .map(|_| ()))
    .unwrap();
}

async fn page_of(app: &TestApp, user: &ApiUser, friend: &ApiUser) -> Vec<String> {
    contents(&read(app, user, &direct(friend, 50)).await.1)
}

fn contents(page: &Value) -> Vec<String> {
    page["results"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|m| m["content"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn create_group(app: &TestApp, creator: &ApiUser, members: &[&ApiUser]) -> i64 {
    let names: Vec<&str> = members.iter().map(|m| m.username.as_str()).collect();
    let r = app
        .post_json(
            &creator.token,
            "/api/group_chats/",
            &json!({ "group_chat_name": "cache", "usernames": names }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["group_chat_id"]
        .as_i64()
        .unwrap()
}

both_backends! {
    /// The latest page comes from memory (a silent change in the database does not show),
    /// and an edit or delete made through another process replaces it within a tick.
    async fn another_processs_edit_and_delete_reach_the_cached_page(a) {
        let b = spawn_app_on(a.database.clone(), &[]).await;
        let reference = spawn_app_on(a.database.clone(), NO_CACHE).await;
        let alice = a.user("alice").await;
        let bob = a.user("bob").await;
        a.befriend(&alice, &bob).await;
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(send(&a, &alice, "bob", &format!("m{n}")).await["message_id"].as_i64().unwrap());
        }
        // The sends' own events, once `a`'s tailer reads them, invalidate the chat again:
        // let that happen (ticks are 25 ms apart) before filling the cache.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, page) = read(&a, &bob, &direct(&alice, 50)).await;
        assert_eq!(contents(&page), ["m2", "m1", "m0"]);
        // Cached: the database changed without an event, and `a` still answers as before,
        // while an older page (with a cursor) and the uncached process read the database.
        rewrite_silently(&a, ids[0], "silent").await;
        let (_, page) = read(&a, &bob, &direct(&alice, 50)).await;
        assert_eq!(contents(&page), ["m2", "m1", "m0"], "served from memory");
        let (_, page) = read(&reference, &bob, &direct(&alice, 50)).await;
        assert_eq!(contents(&page), ["m2", "m1", "silent"]);
        let older = format!("{}&cursor=next___{}", direct(&alice, 50), ids[1]);
        let (_, page) = read(&a, &bob, &older).await;
        assert_eq!(contents(&page), ["silent"], "older pages read the database");
        // An edit through `b` reaches `a`'s page within a tick.
        let r = b.patch_json(&alice.token, &format!("/api/messages/{}", ids[2]), &json!({ "content": "edited" })).await;
        assert_eq!(r.status(), StatusCode::OK);
        converges(&a, &reference, &bob, &direct(&alice, 50)).await.unwrap();
        let (_, page) = read(&a, &bob, &direct(&alice, 50)).await;
        assert_eq!(contents(&page), ["edited", "m1", "silent"]);
        // Warm again, then a delete through `b`.
        read(&a, &alice, &direct(&bob, 50)).await;
        let r = b.delete(&alice.token, &format!("/api/messages/{}", ids[1])).await;
        assert_eq!(r.status(), StatusCode::OK);
        converges(&a, &reference, &alice, &direct(&bob, 50)).await.unwrap();
        let (_, page) = read(&a, &alice, &direct(&bob, 50)).await;
        assert_eq!(contents(&page), ["edited", "silent"]);
        // Read-your-writes: with `a`'s tailer held, what `a` itself writes shows on `a`
        // at once (each write invalidates on its own path), and what `b` writes does not.
        tokio::time::sleep(Duration::from_millis(300)).await;
        a.hub.hold_tailer(true);
        let _ = page_of(&a, &alice, &bob).await;
        let r = a.patch_json(&alice.token, &format!("/api/messages/{}", ids[2]), &json!({ "content": "mine" })).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(page_of(&a, &alice, &bob).await, ["mine", "silent"], "an edit");
        let sent = send(&a, &alice, "bob", "new").await["message_id"].as_i64().unwrap();
        assert_eq!(page_of(&a, &alice, &bob).await, ["new", "mine", "silent"], "a send");
        let r = a.post_json(&alice.token, &format!("/api/messages/{sent}/reactions"), &json!({ "emoji": "🎉" })).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let (_, page) = read(&a, &alice, &direct(&bob, 50)).await;
        assert_eq!(page["results"][0]["reactions"][0]["emoji"], "🎉", "a reaction: {page}");
        let r = a.delete(&alice.token, &format!("/api/messages/{sent}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(page_of(&a, &alice, &bob).await, ["mine", "silent"], "a delete");
        send(&b, &alice, "bob", "elsewhere").await;
        assert_eq!(page_of(&a, &alice, &bob).await, ["mine", "silent"], "b's send waits for a's tailer");
        a.hub.hold_tailer(false);
        converges(&a, &reference, &alice, &direct(&bob, 50)).await.unwrap();
        assert_eq!(page_of(&a, &alice, &bob).await, ["elsewhere", "mine", "silent"]);
    }

    /// A member removed through another process is refused at once by a process whose
    /// cache holds the group, as is a stranger; the cache never answers for them.
    async fn only_readers_get_cached_messages(a) {
        let b = spawn_app_on(a.database.clone(), &[]).await;
        let alice = a.user("alice").await;
        let bob = a.user("bob").await;
        let carol = a.user("carol").await;
        let mallory = a.user("mallory").await;
        a.befriend(&alice, &bob).await;
        a.befriend(&alice, &carol).await;
        let g = create_group(&a, &alice, &[&bob, &carol]).await;
        send(&a, &alice, &g.to_string(), "secret plan").await;
        send(&a, &alice, "bob", "just for bob").await;
        for user in [&alice, &bob, &carol] {
            let (status, page) = read(&a, user, &group(g, 50)).await;
            assert_eq!((status, contents(&page)), (StatusCode::OK, vec!["secret plan".to_string()]));
        }
        read(&a, &bob, &direct(&alice, 50)).await;
        // Strangers: the group is not found; a direct chat is only ever one's own.
        let (status, page) = read(&a, &mallory, &group(g, 50)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{page}");
        assert!(!page.to_string().contains("secret plan"));
        let (status, page) = read(&a, &mallory, &direct(&alice, 50)).await;
        assert_eq!((status, contents(&page)), (StatusCode::OK, vec![]));
        let (status, page) = read(&a, &carol, &direct(&bob, 50)).await;
        assert_eq!((status, contents(&page)), (StatusCode::OK, vec![]), "not alice and bob's chat");
        let html = a.browser();
        html.sign_in("mallory@example.com", PASSWORD).await;
        let r = html.get(&format!("/chats/g/{g}")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(!r.text().await.unwrap().contains("secret plan"), "nor does the chat screen");
        // Removed through `b`: `a` refuses at once, with the group still in its cache.
        let r = b.delete(&alice.token, &format!("/api/group_chats/{g}/members/bob")).await;
        assert!(r.status().is_success(), "{}", r.status());
        let (status, page) = read(&a, &bob, &group(g, 50)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{page}");
        // Leaving through `b` too.
        let r = b.post(&carol.token, &format!("/api/group_chats/{g}/leave")).await;
        assert!(r.status().is_success(), "{}", r.status());
        let (status, _) = read(&a, &carol, &group(g, 50)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // The one left still reads it, from either process.
        for app in [&a, &b] {
            let (status, page) = read(app, &alice, &group(g, 50)).await;
            assert_eq!((status, contents(&page)), (StatusCode::OK, vec!["secret plan".to_string()]));
        }
    }

    /// Random sends, edits, deletes, reactions, reads and membership changes through two
    /// caching processes; after each step both agree with the database, at once on the
    /// process that made the change and within a tick on the other. The seed is printed
    /// on failure (`HISTORY_CACHE_SEED` replays one).
    async fn random_changes_through_two_processes_match_the_database(a) {
        let seed: u64 = std::env::var("HISTORY_CACHE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
            });
        let result = random_run(&a, seed).await;
        if let Err(e) = result {
            panic!("history cache diverged (HISTORY_CACHE_SEED={seed}): {e}");
        }
    }

    /// An account deleted through another process takes its reactions off a group it had
    /// already left (no group event names that): the page cached here follows within a
    /// tick, as the database does.
    async fn an_account_deleted_elsewhere_leaves_no_trace_in_cached_pages(a) {
        let b = spawn_app_on(a.database.clone(), &[]).await;
        let reference = spawn_app_on(a.database.clone(), NO_CACHE).await;
        let alice = a.user("alice").await;
        let bob = a.user("bob").await;
        let carol = a.user("carol").await;
        a.befriend(&alice, &bob).await;
        a.befriend(&alice, &carol).await;
        let g = create_group(&a, &alice, &[&bob, &carol]).await;
        let m = send(&a, &alice, &g.to_string(), "react to me").await["message_id"].as_i64().unwrap();
        let r = a.post_json(&bob.token, &format!("/api/messages/{m}/reactions"), &json!({ "emoji": "👍" })).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = a.post(&bob.token, &format!("/api/group_chats/{g}/leave")).await;
        assert!(r.status().is_success(), "{}", r.status());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, page) = read(&a, &carol, &group(g, 50)).await;
        assert_eq!(page["results"][0]["reactions"][0]["emoji"], "👍", "{page}");
        let r = b
            .call(reqwest::Method::DELETE, &bob.token, "/api/account", Some(&json!({ "password": PASSWORD })))
            .await;
        assert!(r.status().is_success(), "{}", r.status());
        converges(&a, &reference, &carol, &group(g, 50)).await.unwrap();
        let (_, page) = read(&a, &carol, &group(g, 50)).await;
        assert_eq!(page["results"][0]["reactions"], json!([]), "{page}");
    }
}

/// xorshift64*: enough randomness for choosing steps, and replayable from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }
}

/// A message still there: its id, sender and conversation (`None`: the group).
#[derive(Clone)]
struct Live {
    id: i64,
    sender: usize,
    to: Option<usize>,
}

async fn random_run(a: &TestApp, seed: u64) -> Result<(), String> {
    let mut rng = Rng(seed | 1);
    let b = spawn_app_on(a.database.clone(), &[]).await;
    let reference = spawn_app_on(a.database.clone(), NO_CACHE).await;
    let apps = [a, &b];
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(a.user(&format!("member{i}")).await);
    }
    for i in 0..4 {
        for j in i + 1..4 {
            a.befriend(&users[i], &users[j]).await;
        }
    }
    // member0 made the group and stays in it; the others come and go.
    let g = create_group(a, &users[0], &[&users[1], &users[2]]).await;
    let mut members = [true, true, true, false];
    let mut live: Vec<Live> = Vec::new();
    let emoji = ["👍", "🎉", "👀"];
    for step in 0..60 {
        let via = rng.below(2);
        let app = apps[via];
        let actor = rng.below(4);
        let what = match rng.below(10) {
            0..=2 => {
                // A send: to a friend, or to the group when a member.
                let to = if members[actor] && rng.below(2) == 0 {
                    None
                } else {
                    Some((actor + 1 + rng.below(3)) % 4)
                };
                let text = format!("s{step}");
                let dest = to.map_or(g.to_string(), |t| users[t].username.clone());
                let m = send(app, &users[actor], &dest, &text).await;
                live.push(Live {
                    id: m["message_id"].as_i64().unwrap(),
                    sender: actor,
                    to,
                });
                format!("member{actor} sends {text} to {dest}")
            }
            3 | 4 if !live.is_empty() => {
                let m = live[rng.below(live.len())].clone();
                let r = app
                    .patch_json(
                        &users[m.sender].token,
                        &format!("/api/messages/{}", m.id),
                        &json!({ "content": format!("e{step}") }),
                    )
                    .await;
                format!("member{} edits {} ({})", m.sender, m.id, r.status())
            }
            5 if !live.is_empty() => {
                let m = live.remove(rng.below(live.len()));
                let r = app
                    .delete(&users[m.sender].token, &format!("/api/messages/{}", m.id))
                    .await;
                format!("member{} deletes {} ({})", m.sender, m.id, r.status())
            }
            6 | 7 if !live.is_empty() => {
                let m = live[rng.below(live.len())].clone();
                let who = match m.to {
                    Some(to) if rng.below(2) == 0 => to,
                    _ => m.sender,
                };
                let e = emoji[rng.below(emoji.len())];
                let r = if rng.below(3) == 0 {
                    app.delete(
                        &users[who].token,
                        &format!("/api/messages/{}/reactions/{}", m.id, urlencode(e)),
                    )
                    .await
                } else {
                    app.post_json(
                        &users[who].token,
                        &format!("/api/messages/{}/reactions", m.id),
                        &json!({ "emoji": e }),
                    )
                    .await
                };
                format!("member{who} reacts {e} to {} ({})", m.id, r.status())
            }
            8 => {
                // Membership: u0 adds a non-member or removes a member.
                let who = 1 + rng.below(3);
                let r = if members[who] {
                    members[who] = false;
                    app.delete(
                        &users[0].token,
                        &format!("/api/group_chats/{g}/members/{}", users[who].username),
                    )
                    .await
                } else {
                    members[who] = true;
                    app.post_json(
                        &users[0].token,
                        &format!("/api/group_chats/{g}/members"),
                        &json!({ "username": users[who].username }),
                    )
                    .await
                };
                format!("member0 toggles member{who}'s membership ({})", r.status())
            }
            _ => {
                // A reader marks a direct chat read (its `seen` flags change).
                let other = (actor + 1 + rng.below(3)) % 4;
                let r = app.post_json(&users[actor].token, "/api/messages/seen", &json!({ "message_id": i32::MAX, "friend_username": users[other].username })).await;
                format!(
                    "member{actor} marks the chat with member{other} seen ({})",
                    r.status()
                )
            }
        };
        let limit = [3, 5, 50][rng.below(3)];
        let context = |e: String| format!("step {step} ({what}), limit {limit}: {e}");
        // The process that wrote answers with the change at once; the other within a tick.
        for (i, user) in users.iter().enumerate() {
            let other = &users[(i + 1) % 4];
            let views = [direct(other, limit), group(g, limit)];
            for path in &views {
                let want = read(&reference, user, path).await;
                let got = read(app, user, path).await;
                if got != want {
                    return Err(context(format!(
                        "{path} as member{i} on the writer: cached {got:?}\n database {want:?}"
                    )));
                }
                converges(apps[1 - via], &reference, user, path)
                    .await
                    .map_err(context)?;
                if path.contains("group_chats") && !members[i] && want.0 != StatusCode::NOT_FOUND {
                    return Err(context(format!(
                        "member{i} is not a member but got {:?}",
                        want.0
                    )));
                }
            }
        }
    }
    Ok(())
}
