//! The `messenger` command: `serve` (the default), `migrate`, `healthcheck`, `admin`.

use std::{process::ExitCode, time::Duration};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use messenger::{
    admin::{self, AdminCommand, AdminError},
    config::{self, Config, ConfigError, Settings},
    db::Db,
    startup::{shutdown_signal, Application},
    telemetry,
};

#[derive(Parser)]
#[command(
    version,
    about = "A self-hosted chat server. Every setting comes from its environment variable \
             (below, with its default), or from the option of the same name."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Request /health on BIND_ADDR; exit 0 when healthy, 1 otherwise (Docker and ECS use it).
    Healthcheck,
    /// An operator's commands against the database: accounts and counts (exit 2 for bad
    /// input, 1 when the database fails)
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// jemalloc rather than glibc's malloc: with it, and the options below, the hyper buffers
/// of an idle event stream keep one resident page each, where glibc kept about 1.7; an
/// idle stream costs 8.7 KiB of RSS in all (`scripts/bench.sh idle`). jemalloc does not
/// build with MSVC, so there the system allocator stays.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation (`_RJEM_MALLOC_CONF` in the environment
/// overrides them). `tcache_max:4096` keeps blocks over 4 KiB, such as hyper's 8 KiB
/// connection buffers, out of the per-thread caches, and the zero decays give a freed
/// block's pages back to the kernel at once, so the read buffer hyper fills with a stream's
/// request and then replaces is not handed, pages and all, to the next connection. Without
/// them jemalloc's idle stream is 12 KiB.
#[cfg(not(target_env = "msvc"))]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: Option<&'static std::ffi::c_char> =
    Some(unsafe { &*c"dirty_decay_ms:0,muzzy_decay_ms:0,tcache_max:4096".as_ptr() });

fn main() -> ExitCode {
    let cli = match parse_command_line() {
        Ok(cli) => cli,
        Err(e) => return configuration_error(e),
    };
    if matches!(cli.command, Some(Command::Healthcheck)) {
        // Only the address matters here: a container's health check must not depend on
        // the rest of the configuration (a required secret, a readable password file).
        return run(healthcheck(cli.settings.bind_addr));
    }
    let config = match Config::from_settings(cli.settings) {
        Ok(c) => c,
        Err(e) => return configuration_error(e),
    };
    if let Some(Command::Admin { command }) = cli.command {
        return run_admin(config, command);
    }
    run(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Migrate => migrate(config).await,
            _ => serve(config).await,
        }
    })
}

/// The command line, with each setting from its option or else its variable. A bad value
/// is a `ConfigError` naming the variable; anything else clap reports itself (usage
/// errors, `--help`, `--version`) and exits.
fn parse_command_line() -> Result<Cli, ConfigError> {
    let command = Cli::command().mut_args(config::unset_if_empty);
    let matches = command
        .clone()
        .try_get_matches()
        .map_err(|e| ConfigError::from_clap(&e, &command).unwrap_or_else(|| e.exit()))?;
    Ok(Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()))
}

fn configuration_error(e: ConfigError) -> ExitCode {
    eprintln!("configuration error: {e}");
    ExitCode::from(2)
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

/// `messenger admin …`: one line on stderr and exit code 2 for bad input, 1 for a failure.
fn run_admin(config: Config, command: AdminCommand) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    match runtime.block_on(admin::run(&config, command, &mut stdin, &mut stdout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(AdminError::Refused(problem)) => {
            eprintln!("error: {problem}");
            ExitCode::from(2)
        }
        Err(AdminError::Failed(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init(&config);
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
    telemetry::init(&config);
    let db = Db::connect(config.database_url.expose(), 1).await?;
    db.migrate().await?;
    tracing::info!(database = db.backend_name(), "migrations applied");
    Ok(())
}

/// A tiny HTTP/1.1 client, so the container image needs no curl or wget.
async fn healthcheck(mut addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
