//! `--open-conversations`: seeds `--history` messages per conversation, then times
//! `GET /api/messages/?friend_username=X&limit=50` and checks every page is full.

use std::{
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Instant,
};

use anyhow::{anyhow, bail, Result};
use futures_util::{stream, StreamExt as _, TryStreamExt as _};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::{
    client::{authed, befriend_pairs, create_users, expect_ok, short_error, status_error, Api},
    memory::{check_fd_limit, Rss},
    report::{rate_text, summarize, Errors},
    schedule::Schedule,
    Args,
};

#[derive(Deserialize)]
struct PageLite {
    results: Vec<serde::de::IgnoredAny>,
}

pub async fn run(args: &Args, api: &Api, run: &str) -> Result<bool> {
    if args.users < 2 {
        bail!("--users must be at least 2");
    }
    check_fd_limit(args.concurrency + 64);
    let mut rss = Rss::new(&args.server_pid);
    let users = create_users(
        api,
        run,
        args.users,
        &args.password,
        args.signup_concurrency,
    )
    .await?;
    befriend_pairs(api, &args.password, &users).await?;
    let pairs = args.users / 2;

    eprintln!(
        "seeding {} messages per conversation ({} conversations)...",
        args.history, pairs
    );
    let seed_total = pairs * args.history;
    let seeded = AtomicUsize::new(0);
    let seed_start = Instant::now();
    stream::iter(0..seed_total)
        .map(|i| {
            let (users, seeded) = (&users, &seeded);
            let password = &args.password;
            async move {
                let k = i % pairs;
                let from = 2 * k + (i / pairs) % 2;
                let (from, to) = (&users[from], &users[from ^ 1]);
                let body = json!({ "content": format!("lt:{run}:h{i}"), "group_chat_id": null });
                let resp = authed(api, password, from, |t| {
                    api.client
                        .post(api.url("/api/messages/"))
                        .query(&[("addressee_username", &to.username)])
                        .bearer_auth(t)
                        .json(&body)
                })
                .await
                .map_err(|e| anyhow!("seeding POST /api/messages/: {e}"))?;
                expect_ok(resp, "seeding POST /api/messages/").await?;
                let d = seeded.fetch_add(1, Ordering::Relaxed) + 1;
                if d % (seed_total / 5).max(1) == 0 {
                    eprintln!(
                        "  {d}/{seed_total} ({:.1} s)",
                        seed_start.elapsed().as_secs_f64()
                    );
                }
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;

    rss.sample("before_reads");
    let expected_len = args.history.min(50);
    let schedule = Arc::new(Schedule::new(args.rate, args.duration));
    let errors = Arc::new(Errors::default());
    let short_pages = Arc::new(AtomicU64::new(0));
    eprintln!(
        "reading history for {} s at {} over {} connections...",
        args.duration,
        rate_text(args.rate, "req/s"),
        args.concurrency
    );
    let users = Arc::new(users);
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (schedule, errors, short_pages, users, api) = (
            schedule.clone(),
            errors.clone(),
            short_pages.clone(),
            users.clone(),
            api.clone(),
        );
        let password = args.password.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while let Some(n) = schedule.next().await {
                let reader = (n as usize) % (pairs * 2);
                let (me, friend) = (&users[reader], &users[reader ^ 1]);
                let t0 = Instant::now();
                let result = authed(&api, &password, me, |t| {
                    api.client
                        .get(api.url("/api/messages/"))
                        .query(&[
                            ("friend_username", friend.username.as_str()),
                            ("limit", "50"),
                        ])
                        .bearer_auth(t)
                })
                .await;
                match result {
                    Ok(resp) if resp.status() == StatusCode::OK => match resp.bytes().await {
                        Ok(body) => {
                            latencies.push(t0.elapsed());
                            match serde_json::from_slice::<PageLite>(&body) {
                                Ok(p) if p.results.len() == expected_len => {}
                                _ => {
                                    short_pages.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Err(e) => errors.add(short_error(&e)),
                    },
                    Ok(resp) => errors.add(status_error(resp).await),
                    Err(e) => errors.add(e),
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    let secs = schedule.start.elapsed().as_secs_f64();
    rss.sample("end");
    let lat = summarize(latencies);
    let throughput = lat.count as f64 / secs.max(1e-9);
    let short = short_pages.load(Ordering::Relaxed);
    let ok = errors.total() == 0 && short == 0;
    if args.json {
        let report = json!({
            "mode": "open_conversations",
            "ok": ok,
            "run_id": run,
            "url": api.base,
            "users": args.users,
            "conversations": pairs,
            "history_per_conversation": args.history,
            "concurrency": args.concurrency,
            "target_rate": args.rate,
            "duration_s": args.duration,
            "requests": lat.count,
            "errors": errors.total(),
            "error_kinds": errors.json(),
            "wrong_page_size": short,
            "seconds": secs,
            "throughput_req_s": throughput,
            "latency_ms": lat.json(),
            "server_rss": rss.json(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut out = String::new();
        let _ = writeln!(out, "== loadtest open conversations (run {run}) ==");
        let _ = writeln!(out, "server           {}", api.base);
        let _ = writeln!(
            out,
            "setup            {pairs} conversations x {} messages, concurrency {}, target {} for {} s",
            args.history,
            args.concurrency,
            rate_text(args.rate, "req/s"),
            args.duration
        );
        let _ = writeln!(
            out,
            "requests         {} ok in {secs:.2} s = {throughput:.1} req/s; errors {}; wrong page size {short}",
            lat.count,
            errors.total()
        );
        if errors.total() > 0 {
            let _ = writeln!(out, "errors           {}", errors.text());
        }
        let _ = writeln!(out, "latency          {}", lat.text());
        out.push_str(&rss.text());
        let _ = writeln!(out, "result           {}", if ok { "OK" } else { "FAILED" });
        print!("{out}");
    }
    Ok(ok)
}
