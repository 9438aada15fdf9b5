//! `--idle-streams N`: opens N event streams over `--users` users and holds them for
//! `--hold` seconds, sampling the server's memory.

use std::{
    fmt::Write as _,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use serde_json::json;

use crate::{
    client::{create_users, Api},
    memory::{check_fd_limit, mib, rss_kib, Rss},
    sse::{close_streams, open_streams, StreamCtx},
    Args,
};

pub async fn run(
    args: &Args,
    post_api: &Api,
    stream_api: &Api,
    run: &str,
    total: usize,
) -> Result<bool> {
    if args.users == 0 || total == 0 {
        bail!("--users and --idle-streams must be at least 1");
    }
    check_fd_limit(total + 64);
    let mut rss = Rss::new(&args.server_pid);
    let users = create_users(
        post_api,
        run,
        args.users,
        &args.password,
        args.signup_concurrency,
    )
    .await?;
    rss.sample("before_streams");
    let ctx = Arc::new(StreamCtx::new(
        run,
        &args.password,
        stream_api,
        post_api,
        users,
    ));
    let streams = open_streams(&ctx, total, args.connect_concurrency).await?;
    let open_secs = streams.open_secs;
    tokio::time::sleep(Duration::from_millis(500)).await;
    rss.sample("after_streams");
    eprintln!("holding {total} streams for {} s...", args.hold);
    let hold_start = Instant::now();
    let hold = Duration::from_secs_f64(args.hold);
    let mut min_live = ctx.stats.live.load(Ordering::Relaxed);
    let mut timeline = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    while hold_start.elapsed() < hold {
        let left = hold.saturating_sub(hold_start.elapsed());
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep(left) => {}
        }
        let live = ctx.stats.live.load(Ordering::Relaxed);
        min_live = min_live.min(live);
        let values: Vec<Option<u64>> = args.server_pid.iter().map(|p| rss_kib(*p)).collect();
        let t = hold_start.elapsed().as_secs_f64();
        eprintln!(
            "  t={t:.0}s live streams {live}{}",
            args.server_pid
                .iter()
                .zip(&values)
                .map(|(p, v)| format!("  rss[{p}] {}", mib(*v)))
                .collect::<String>()
        );
        timeline.push(json!({ "t": t, "live": live, "rss_kib": values }));
    }
    rss.sample("end");
    let live_at_end = ctx.stats.live.load(Ordering::Relaxed);
    close_streams(&ctx, streams).await;

    let dropped = ctx.stats.ended_by_server.load(Ordering::Relaxed)
        + ctx.stats.read_errors.load(Ordering::Relaxed);
    let ok = live_at_end as usize == total && dropped == 0;
    let per_stream: Vec<Option<f64>> = (0..args.server_pid.len())
        .map(|i| {
            let (b, a) = (rss.get("before_streams", i)?, rss.get("after_streams", i)?);
            Some((a as f64 - b as f64) / total as f64)
        })
        .collect();
    if args.json {
        let report = json!({
            "mode": "idle_streams",
            "ok": ok,
            "run_id": run,
            "stream_url": stream_api.base,
            "users": args.users,
            "streams": total,
            "streams_open_seconds": open_secs,
            "hold_s": args.hold,
            "streams_live_at_end": live_at_end,
            "min_live_during_hold": min_live,
            "stream_stats": ctx.stats.json(),
            "first_stream_problem": ctx.first_error(),
            "server_rss": rss.json(),
            "server_kib_per_stream": per_stream,
            "timeline": timeline,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut out = String::new();
        let _ = writeln!(out, "== loadtest idle streams (run {run}) ==");
        let _ = writeln!(out, "server           {}", stream_api.base);
        let _ = writeln!(
            out,
            "streams          {total} over {} users opened in {open_secs:.2} s; held {} s; live at end {live_at_end} (min {min_live})",
            args.users, args.hold
        );
        let _ = writeln!(out, "stream events    {}", ctx.stats.text());
        if let Some(e) = ctx.first_error() {
            let _ = writeln!(out, "first stream problem: {e}");
        }
        out.push_str(&rss.text());
        for (pid, v) in args.server_pid.iter().zip(&per_stream) {
            if let Some(k) = v {
                let _ = writeln!(
                    out,
                    "per stream       pid {pid}: {k:.1} KiB (after - before streams, / {total})"
                );
            }
        }
        let _ = writeln!(out, "result           {}", if ok { "OK" } else { "FAILED" });
        print!("{out}");
    }
    Ok(ok)
}
