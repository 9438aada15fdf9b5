//! The friend list cache (`FRIEND_LIST_CACHE_MB`): first pages of friend lists from
//! memory, as correct as the database. Two processes with the cache on one database, and
//! a third with it off as the database's own answer; a change made through either shows
//! on the other within a tailer tick, on its own at once, for both users of the pair.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{both_backends, helpers::*};

/// The database's answer: a process that caches nothing.
const NO_CACHE: &[(&str, &str)] = &[("FRIEND_LIST_CACHE_MB", "0")];
/// How long a change may take to reach another process (a tick is 25 ms in the tests).
const CONVERGE: Duration = Duration::from_secs(3);

const FRIENDS: &str = "/api/friends/?limit=50";
const RECEIVED: &str = "/api/friends/requests/senders?limit=50";
const SENT: &str = "/api/friends/requests/receivers?limit=50";
const BLOCKED: &str = "/api/friends/blocked?limit=50";

/// The usernames of a list's page.
async fn names(app: &TestApp, user: &ApiUser, path: &str) -> Vec<String> {
    let r = app.get(&user.token, path).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    let page: Value = r.json().await.unwrap();
    page["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: {page}"))
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_string())
        .collect()
}

/// Polls `app` until its answer equals the uncached process's, for at most [`CONVERGE`].
async fn converges(app: &TestApp, reference: &TestApp, user: &ApiUser, path: &str) -> Vec<String> {
    let started = Instant::now();
    loop {
        let want = names(reference, user, path).await;
        let got = names(app, user, path).await;
        if got == want {
            return got;
        }
        assert!(
            started.elapsed() < CONVERGE,
            "{} {path} as {}: cached {got:?}, database {want:?}",
            app.address,
            user.username
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Renames a friend in one owner's list behind every process's back: no event, so only a
/// process that reads the database sees it. Shows which answers came from a cache.
async fn rename_silently(app: &TestApp, owner: &ApiUser, other: &ApiUser, name: &str) {
    let sql = "UPDATE friend_list SET other_username = ? WHERE owner_id = ? AND other_id = ?";
    messenger::db_run!(&app.db, |pool| sqlx::query(sql)
        .bind(name)
        .bind(owner.id)
        .bind(other.id)
        .execute(pool)
        .await
        .map(|_| ()))
    .unwrap();
}

async fn act(app: &TestApp, user: &ApiUser, method: &str, path: &str) {
    let r = match method {
        "POST" => app.post(&user.token, path).await,
        _ => app.delete(&user.token, path).await,
    };
    assert!(r.status().is_success(), "{method} {path}: {}", r.status());
}

/// The `list` of the next `friend_list` event, which must be about `other`.
async fn list_of(stream: &mut EventStream, other: &ApiUser) -> Value {
    let e = stream
        .next_of(&["friend_list"], Duration::from_secs(10))
        .await
        .expect("a friend_list event");
    let data = e.json();
    assert_eq!(data["user_id"], json!(other.id), "{data}");
    data["list"].clone()
}

both_backends! {
    /// A first page comes from memory (a silent change in the database does not show, a
    /// page with a cursor reads the database), and a change made through another process
    /// reaches both users' cached lists within a tick, the one who acted too.
    async fn another_processs_friendship_changes_reach_cached_lists(a) {
        let b = spawn_app_on(a.database.clone(), &[]).await;
        let reference = spawn_app_on(a.database.clone(), NO_CACHE).await;
        let alice = a.user("alice").await;
        let bob = a.user("bob").await;
        let carol = a.user("carol").await;
        a.befriend(&alice, &bob).await;
        a.befriend(&alice, &carol).await;
        // The friendships' own events, once `a`'s tailer reads them, invalidate the lists
        // again: let that happen before filling the cache.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(names(&a, &alice, FRIENDS).await, ["bob", "carol"]);
        rename_silently(&a, &alice, &bob, "bobby").await;
        assert_eq!(names(&a, &alice, FRIENDS).await, ["bob", "carol"], "served from memory");
        assert_eq!(names(&reference, &alice, FRIENDS).await, ["bobby", "carol"]);
        let second = "/api/friends/?limit=1&cursor=next___bobby";
        assert_eq!(names(&a, &alice, second).await, ["carol"], "a cursor reads the database");
        // A smaller first page comes from the same entry.
        assert_eq!(names(&a, &alice, "/api/friends/?limit=1").await, ["bob"]);

        // Dave asks alice through `b`: alice's received list, cached on `a`, shows it.
        let dave = a.user("dave").await;
        assert!(names(&a, &alice, RECEIVED).await.is_empty());
        assert!(names(&a, &dave, SENT).await.is_empty());
        act(&b, &dave, "POST", "/api/friends/requests?username=alice").await;
        assert_eq!(converges(&a, &reference, &alice, RECEIVED).await, ["dave"]);
        assert_eq!(converges(&a, &reference, &dave, SENT).await, ["alice"], "the one who asked");
        // Alice accepts through `b`: her own cached friends list follows (she acted), and
        // the silent rename shows with it, read again from the database.
        names(&a, &dave, FRIENDS).await;
        act(&b, &alice, "POST", "/api/friends/requests/accept?requester_username=dave").await;
        assert_eq!(converges(&a, &reference, &alice, FRIENDS).await, ["bobby", "carol", "dave"]);
        assert_eq!(converges(&a, &reference, &dave, FRIENDS).await, ["alice"]);
        assert!(converges(&a, &reference, &alice, RECEIVED).await.is_empty());
        // Carol blocks alice through `b`: gone from alice's friends, on carol's blocked list.
        names(&a, &carol, BLOCKED).await;
        act(&b, &carol, "POST", "/api/friends/requests/block?user_to_block_username=alice").await;
        assert_eq!(converges(&a, &reference, &alice, FRIENDS).await, ["bobby", "dave"]);
        assert_eq!(converges(&a, &reference, &carol, BLOCKED).await, ["alice"]);
        assert!(converges(&a, &reference, &carol, FRIENDS).await.is_empty());
    }

    /// What a process changes itself shows on it at once, for both users, with its tailer
    /// held; what another process changes waits for the tailer.
    async fn a_process_sees_its_own_friendship_changes_at_once(a) {
        let b = spawn_app_on(a.database.clone(), &[]).await;
        let reference = spawn_app_on(a.database.clone(), NO_CACHE).await;
        let alice = a.user("alice").await;
        let bob = a.user("bob").await;
        let carol = a.user("carol").await;
        a.befriend(&alice, &bob).await;
        a.befriend(&alice, &carol).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        a.hub.hold_tailer(true);
        assert_eq!(names(&a, &alice, FRIENDS).await, ["bob", "carol"]);
        assert_eq!(names(&a, &carol, FRIENDS).await, ["alice"]);
        act(&a, &alice, "DELETE", "/api/friends/requests?friend_username=carol").await;
        assert_eq!(names(&a, &alice, FRIENDS).await, ["bob"], "the one who acted");
        assert!(names(&a, &carol, FRIENDS).await.is_empty(), "the other side");
        act(&b, &bob, "DELETE", "/api/friends/requests?friend_username=alice").await;
        assert_eq!(names(&a, &alice, FRIENDS).await, ["bob"], "b's change waits for a's tailer");
        a.hub.hold_tailer(false);
        assert!(converges(&a, &reference, &alice, FRIENDS).await.is_empty());
    }

    /// The one who acted hears `friend_list` on their other streams (another tab, another
    /// device, another process): which of their lists the other user is in now, and a
    /// page's friends section refreshes. Nobody else hears it.
    async fn the_one_who_acts_hears_where_the_other_now_is(a) {
        let b = spawn_app_on(a.database.clone(), &[]).await;
        let alice = a.user("alice").await;
        let bob = a.user("bob").await;
        let mut alices = b.events(&alice, None).await;
        let mut bobs = b.events(&bob, None).await;
        // Alice's friends page, open in a tab on `b`: its stream tells it to refresh.
        let tab = b.browser();
        assert_eq!(tab.sign_in(&alice.email, PASSWORD).await.status(), StatusCode::SEE_OTHER);
        let mut alices_tab = EventStream::new(tab.client.get(b.url("/events")).send().await.unwrap());
        b.wait_for_streams(3).await;
        let wait = Duration::from_secs(10);
        act(&a, &alice, "POST", "/api/friends/requests?username=bob").await;
        assert_eq!(list_of(&mut alices, &bob).await, json!("sent"));
        let refresh = alices_tab.next_of(&["friends"], Duration::from_secs(10)).await;
        assert!(refresh.is_some(), "the tab's friends section refreshes");
        act(&a, &alice, "POST", "/api/friends/requests/block?user_to_block_username=bob").await;
        assert_eq!(list_of(&mut alices, &bob).await, json!("blocked"));
        act(&a, &alice, "POST", "/api/friends/requests/unblock?username=bob").await;
        assert_eq!(list_of(&mut alices, &bob).await, Value::Null);
        // Bob heard the request and its withdrawal, never alice's own list changes.
        let marker = "/api/friends/requests?username=alice";
        act(&a, &bob, "POST", marker).await;
        let heard = bobs.until(&["friend_list"], |e| e.event == "friend_list").await;
        assert!(heard.is_empty(), "{heard:?}");
        let e = alices.next_of(&["friend_request"], wait).await.expect("bob's request");
        assert_eq!(e.json()["username"], "bob");
    }

    /// An account deleted through another process leaves every cached list that showed
    /// it, the blocked list of someone who had blocked it too.
    async fn a_deleted_account_leaves_cached_lists_everywhere(a) {
        let b = spawn_app_on(a.database.clone(), &[]).await;
        let reference = spawn_app_on(a.database.clone(), NO_CACHE).await;
        let alice = a.user("alice").await;
        let bob = a.user("bob").await;
        let carol = a.user("carol").await;
        let dave = a.user("dave").await;
        a.befriend(&alice, &bob).await;
        act(&a, &carol, "POST", "/api/friends/requests/block?user_to_block_username=alice").await;
        act(&a, &alice, "POST", "/api/friends/requests?username=dave").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(names(&a, &bob, FRIENDS).await, ["alice"]);
        assert_eq!(names(&a, &carol, BLOCKED).await, ["alice"]);
        assert_eq!(names(&a, &dave, RECEIVED).await, ["alice"]);
        let r = b
            .call(reqwest::Method::DELETE, &alice.token, "/api/account", Some(&json!({ "password": PASSWORD })))
            .await;
        assert!(r.status().is_success(), "{}", r.status());
        assert!(converges(&a, &reference, &bob, FRIENDS).await.is_empty());
        assert!(converges(&a, &reference, &carol, BLOCKED).await.is_empty());
        assert!(converges(&a, &reference, &dave, RECEIVED).await.is_empty());
    }
}
