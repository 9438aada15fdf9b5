//! Default mode: pairs of users message each other at `--rate` while every user holds
//! event streams; each message's arrival on the recipient's streams is matched and timed.
//! With `--group`, all the users are one group instead, they take turns to post to it,
//! and each message is expected on every member's streams (the sender's too).

use std::{
    fmt::Write as _,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use reqwest::StatusCode;
use serde_json::json;

use crate::{
    client::{authed, befriend, befriend_pairs, create_users, expect_ok, status_error, Api, User},
    memory::{check_fd_limit, Rss},
    report::{rate_text, summarize, Errors},
    schedule::Schedule,
    sse::{close_streams, open_streams, StreamCtx},
    tracker::content_for,
    Args,
};

pub async fn run(args: &Args, post_api: &Api, stream_api: &Api, run: &str) -> Result<bool> {
    if args.users < 2 {
        bail!("--users must be at least 2 (users are paired)");
    }
    if args.users % 2 == 1 && !args.group {
        eprintln!(
            "warning: odd --users: user {} has no partner and only holds a stream",
            args.users - 1
        );
    }
    let total_streams = args.streams.unwrap_or(args.users);
    if total_streams < args.users {
        bail!("--streams ({total_streams}) must be at least --users ({}): every recipient needs a stream", args.users);
    }
    if args.rate < 0.0 || args.duration <= 0.0 {
        bail!("--rate must be >= 0 and --duration > 0");
    }
    check_fd_limit(total_streams + args.concurrency + 64);
    let mut rss = Rss::new(&args.server_pid);

    let users = create_users(
        post_api,
        run,
        args.users,
        &args.password,
        args.signup_concurrency,
    )
    .await?;
    let group = if args.group {
        Some(create_group(post_api, &args.password, &users).await?)
    } else {
        befriend_pairs(post_api, &args.password, &users).await?;
        None
    };

    rss.sample("before_streams");
    let mut ctx = StreamCtx::new(run, &args.password, stream_api, post_api, users);
    // In a group the sender's own streams get the message too: expected, not an echo.
    ctx.own_copies_tracked = group.is_some();
    let ctx = Arc::new(ctx);
    let streams = open_streams(&ctx, total_streams, args.connect_concurrency).await?;
    let open_secs = streams.open_secs;
    // Let presence/friendship events from the setup pass before timing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    rss.sample("after_streams");

    let pairs = args.users / 2;
    let everyone: Arc<[(usize, usize)]> =
        (0..args.users).map(|u| (u, streams.per_user[u])).collect();
    let schedule = Arc::new(Schedule::new(args.rate, args.duration));
    let errors = Arc::new(Errors::default());
    let per_user = Arc::new(streams.per_user.clone());
    eprintln!(
        "sending for {} s at {} over {} connections...",
        args.duration,
        rate_text(args.rate, "msg/s"),
        args.concurrency
    );
    let mut senders = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (ctx, schedule, errors, per_user, api, everyone) = (
            ctx.clone(),
            schedule.clone(),
            errors.clone(),
            per_user.clone(),
            post_api.clone(),
            everyone.clone(),
        );
        let users = args.users;
        let (password, pad) = (args.password.clone(), args.message_chars);
        senders.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while let Some(n) = schedule.next().await {
                let content = content_for(&ctx.run, n, pad);
                let t0 = Instant::now();
                let (from, query, body) = match group {
                    // Members take turns; everyone hears each message.
                    Some(g) => {
                        let from = &ctx.users[(n as usize) % users];
                        ctx.tracker.register_for(n, &everyone, t0);
                        (
                            from,
                            None,
                            json!({ "content": content, "group_chat_id": g }),
                        )
                    }
                    None => {
                        let sender = (n as usize) % (pairs * 2);
                        let recipient = sender ^ 1;
                        ctx.tracker.register(n, recipient, per_user[recipient], t0);
                        let to = ctx.users[recipient].username.as_str();
                        let body = json!({ "content": content, "group_chat_id": null });
                        (&ctx.users[sender], Some(to), body)
                    }
                };
                let result = authed(&api, &password, from, |t| {
                    let post = api.client.post(api.url("/api/messages/"));
                    let post = match query {
                        Some(to) => post.query(&[("addressee_username", to)]),
                        None => post,
                    };
                    post.bearer_auth(t).json(&body)
                })
                .await;
                let rtt = t0.elapsed();
                match result {
                    Ok(resp) if resp.status() == StatusCode::CREATED => {
                        latencies.push(rtt);
                        ctx.tracker.posted(n, true);
                        // Read the body so the connection goes back to the pool.
                        let _ = resp.bytes().await;
                    }
                    Ok(resp) => {
                        ctx.tracker.posted(n, false);
                        errors.add(status_error(resp).await);
                    }
                    Err(e) => {
                        ctx.tracker.posted(n, false);
                        errors.add(e);
                    }
                }
            }
            latencies
        }));
    }
    let mut send_latencies = Vec::new();
    for s in senders {
        send_latencies.extend(s.await?);
    }
    let send_end = Instant::now();
    let send_secs = send_end
        .saturating_duration_since(schedule.start)
        .as_secs_f64();

    // Grace: wait for outstanding deliveries.
    let grace_end = send_end + Duration::from_secs_f64(args.grace);
    while ctx.tracker.outstanding() > 0 && Instant::now() < grace_end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain_secs = send_end.elapsed().as_secs_f64();
    rss.sample("end");
    let live_at_end = ctx.stats.live.load(Ordering::Relaxed);

    // Tally, then close the streams.
    let tally = ctx.tracker.tally();
    close_streams(&ctx, streams).await;

    let send = summarize(send_latencies);
    let delivery = summarize(tally.delivery);
    let sent_ok = tally.sent_ok;
    let throughput = sent_ok as f64 / send_secs.max(1e-9);
    let ok = tally.lost == 0 && tally.duplicated == 0 && tally.misrouted == 0 && tally.failed == 0;
    let cross = post_api.base != stream_api.base;

    if args.json {
        let report = json!({
            "mode": "messages",
            "ok": ok,
            "run_id": run,
            "post_url": post_api.base,
            "stream_url": stream_api.base,
            "cross_process": cross,
            "users": args.users,
            "pairs": if group.is_some() { 0 } else { pairs },
            "group_members": if group.is_some() { args.users } else { 0 },
            "streams": total_streams,
            "streams_open_seconds": open_secs,
            "streams_live_at_end": live_at_end,
            "concurrency": args.concurrency,
            "target_rate": args.rate,
            "duration_s": args.duration,
            "message_chars": args.message_chars,
            "sent": sent_ok,
            "send_failures": tally.failed,
            "send_errors": errors.json(),
            "send_seconds": send_secs,
            "throughput_msg_s": throughput,
            "max_schedule_lag_ms": schedule.max_lag_ms(),
            "send_latency_ms": send.json(),
            "delivery_latency_ms": delivery.json(),
            "deliveries_expected": tally.expected,
            "deliveries_received": tally.received,
            "lost": tally.lost,
            "duplicated": tally.duplicated,
            "duplicate_copies": tally.duplicate_copies,
            "misrouted": tally.misrouted,
            "unknown_message_events": tally.unknown,
            "delivered_despite_failed_post": tally.delivered_after_failure,
            "grace_s": args.grace,
            "drain_seconds": drain_secs,
            "stream_stats": ctx.stats.json(),
            "first_stream_problem": ctx.first_error(),
            "server_rss": rss.json(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut out = String::new();
        let _ = writeln!(out, "== loadtest messages (run {run}) ==");
        if cross {
            let _ = writeln!(
                out,
                "post to          {}   streams from {}   (cross-process)",
                post_api.base, stream_api.base
            );
        } else {
            let _ = writeln!(out, "server           {}", post_api.base);
        }
        let shape = match group {
            Some(_) => "in one group".to_string(),
            None => format!("({pairs} pairs)"),
        };
        let _ = writeln!(
            out,
            "setup            {} users {shape}, {total_streams} streams opened in {open_secs:.2} s, concurrency {}, target {} for {} s",
            args.users,
            args.concurrency,
            rate_text(args.rate, "msg/s"),
            args.duration
        );
        let _ = writeln!(
            out,
            "sent             {sent_ok} messages in {send_secs:.2} s = {throughput:.1} msg/s   (failed POSTs {}, max schedule lag {:.1} ms)",
            tally.failed,
            schedule.max_lag_ms()
        );
        if tally.failed > 0 {
            let _ = writeln!(out, "send errors      {}", errors.text());
        }
        let _ = writeln!(out, "send latency     {}", send.text());
        let _ = writeln!(out, "delivery latency {}", delivery.text());
        let _ = writeln!(
            out,
            "deliveries       {}/{} received; lost {}, duplicated {}, misrouted {}, unknown {}   (waited {drain_secs:.2} s after sending, grace {} s)",
            tally.received,
            tally.expected,
            tally.lost,
            tally.duplicated,
            tally.misrouted,
            tally.unknown,
            args.grace
        );
        if tally.delivered_after_failure > 0 {
            let _ = writeln!(
                out,
                "note             {} deliveries of messages whose POST failed",
                tally.delivered_after_failure
            );
        }
        let _ = writeln!(
            out,
            "streams          {live_at_end} live at end; {}",
            ctx.stats.text()
        );
        if let Some(e) = ctx.first_error() {
            let _ = writeln!(out, "first stream problem: {e}");
        }
        out.push_str(&rss.text());
        let _ = writeln!(out, "result           {}", if ok { "OK" } else { "FAILED" });
        print!("{out}");
    }
    Ok(ok)
}

/// Makes user 0 every other user's friend and creates one group of them all; its id.
async fn create_group(api: &Api, password: &str, users: &[Arc<User>]) -> Result<i64> {
    let star: Vec<(usize, usize)> = (1..users.len()).map(|u| (u, 0)).collect();
    befriend(api, password, users, &star).await?;
    let owner = &users[0];
    // Created with the first hundred (what one request may name), then added one by one.
    let (first, rest) = users[1..].split_at((users.len() - 1).min(100));
    let names: Vec<&str> = first.iter().map(|u| u.username.as_str()).collect();
    let body = json!({ "group_chat_name": "loadtest", "usernames": names });
    let resp = authed(api, password, owner, |t| {
        api.client
            .post(api.url("/api/group_chats/"))
            .bearer_auth(t)
            .json(&body)
    })
    .await
    .map_err(|e| anyhow::anyhow!("POST /api/group_chats/: {e}"))?;
    let created: serde_json::Value = expect_ok(resp, "POST /api/group_chats/")
        .await?
        .json()
        .await?;
    let Some(group) = created["group_chat_id"].as_i64() else {
        bail!("POST /api/group_chats/ answered {created}");
    };
    eprintln!("adding {} more members to group {group}...", rest.len());
    for member in rest {
        let body = json!({ "username": member.username });
        let resp = authed(api, password, owner, |t| {
            api.client
                .post(api.url(&format!("/api/group_chats/{group}/members")))
                .bearer_auth(t)
                .json(&body)
        })
        .await
        .map_err(|e| anyhow::anyhow!("POST /api/group_chats/{group}/members: {e}"))?;
        expect_ok(resp, "POST /api/group_chats/{id}/members").await?;
    }
    Ok(group)
}
