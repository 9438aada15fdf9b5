//! The `messenger` command: `serve` (the default), `migrate`, `healthcheck`.

use std::{process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use messenger::{
    config::Config,
    db::Db,
    startup::{shutdown_signal, Application},
    telemetry,
};

#[derive(Parser)]
#[command(
    version,
    about = "A self-hosted chat server. Configuration comes from the environment (see README)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Request /health on BIND_ADDR; exit 0 when healthy, 1 otherwise (Docker and ECS use it).
    Healthcheck,
}

/// jemalloc rather than glibc's malloc: with it, and the options below, the hyper buffers
/// of an idle event stream keep one resident page each, where glibc kept about 1.7; an
/// idle stream costs 8.7 KiB of RSS in all (`scripts/bench.sh idle`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation (`_RJEM_MALLOC_CONF` in the environment
/// overrides them). `tcache_max:4096` keeps blocks over 4 KiB, such as hyper's 8 KiB
/// connection buffers, out of the per-thread caches, and the zero decays give a freed
/// block's pages back to the kernel at once, so the read buffer hyper fills with a stream's
/// request and then replaces is not handed, pages and all, to the next connection. Without
/// them jemalloc's idle stream is 12 KiB.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: Option<&'static std::ffi::c_char> =
    Some(unsafe { &*c"dirty_decay_ms:0,muzzy_decay_ms:0,tcache_max:4096".as_ptr() });

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Some(Command::Healthcheck)) {
        // Only the address matters here: a container's health check must not depend on
        // the rest of the configuration (secrets, database URL) being readable.
        return run(healthcheck(std::env::var("BIND_ADDR").ok()));
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    run(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Migrate => migrate(config).await,
            _ => serve(config).await,
        }
    })
}

fn run(work: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init(config.log_format);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let app = Application::build(config.clone()).await?;
    tracing::info!(
        address = %config.bind_addr,
        port = app.port(),
        database = app.state().db.backend_name(),
        "messenger listening"
    );
    app.run_until_stopped(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    telemetry::init(config.log_format);
    let db = Db::connect(config.database_url.expose(), 1).await?;
    db.migrate().await?;
    tracing::info!(database = db.backend_name(), "migrations applied");
    Ok(())
}

/// A tiny HTTP/1.1 client, so the container image needs no curl or wget.
async fn healthcheck(bind_addr: Option<String>) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr: std::net::SocketAddr = match bind_addr {
        Some(raw) => raw
            .parse()
            .map_err(|_| anyhow::anyhow!("BIND_ADDR: not host:port: {raw:?}"))?,
        None => std::net::SocketAddr::from(([127, 0, 0, 1], 8000)),
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(5), check)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {addr} within 5 s"))??;
    let status_line = response.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) == Some("200") {
        println!("healthy: {addr}");
        Ok(())
    } else {
        anyhow::bail!("unhealthy: {addr} answered {status_line:?}")
    }
}
