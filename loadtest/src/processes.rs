//! The soak's own processes: a MariaDB server with its own data directory and port (from
//! the packages `scripts/start_test_db.sh` uses), stopped with SIGTERM and started again
//! on the same data, and server processes it starts, `kill -9`s and restarts.

use std::{
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use tokio::process::{Child, Command};

/// Sends `signal` (`TERM`, `KILL`) to `pid` with kill(1): no libc binding needed.
async fn signal(pid: u32, signal: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .await
        .context("kill(1)")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed");
    }
    Ok(())
}

/// Fails unless nothing listens on 127.0.0.1:`port` (it must be ours alone).
pub fn check_port_free(port: u16, what: &str) -> Result<()> {
    if std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(300),
    )
    .is_ok()
    {
        bail!("port {port} (for {what}) is already taken: choose another");
    }
    Ok(())
}

/// Opens `dir/name` for appending: each process's output across its restarts.
fn log_file(dir: &Path, name: &str) -> Result<std::fs::File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .with_context(|| format!("open {}", dir.join(name).display()))
}

/// A MariaDB server of the soak's own. Its data directory is deleted when it is dropped
/// (unless kept), and the server killed.
pub struct MariaDb {
    dir: PathBuf,
    pub port: u16,
    os_user: String,
    server: Option<Child>,
    /// Keep the data directory (and the logs in it) when dropped.
    pub keep: bool,
}

impl MariaDb {
    /// Initialises a fresh data directory in `dir` (which must not exist), starts the
    /// server on `port`, and creates the user `messenger` and the database `messenger`.
    pub async fn create(dir: PathBuf, port: u16, keep: bool) -> Result<Self> {
        for bin in ["mariadbd", "mariadb-install-db", "mariadb"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .stdout(Stdio::null())
                .status()
                .await
                .is_ok_and(|s| s.success());
            if !found {
                bail!("{bin} is not installed (Debian: apt-get install mariadb-server)");
            }
        }
        check_port_free(port, "the soak's MariaDB")?;
        if dir.exists() {
            bail!(
                "{} exists: the soak makes a fresh data directory",
                dir.display()
            );
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let os_user = String::from_utf8(Command::new("id").arg("-un").output().await?.stdout)?
            .trim()
            .to_string();
        let mut db = MariaDb {
            dir,
            port,
            os_user,
            server: None,
            keep,
        };
        let install = Command::new("mariadb-install-db")
            .arg(format!("--user={}", db.os_user))
            .arg(format!("--datadir={}", db.data().display()))
            .args(["--skip-test-db", "--auth-root-authentication-method=socket"])
            .arg(format!("--auth-root-socket-user={}", db.os_user))
            .output()
            .await
            .context("mariadb-install-db")?;
        if !install.status.success() {
            bail!(
                "mariadb-install-db: {}",
                String::from_utf8_lossy(&install.stderr)
            );
        }
        db.start().await?;
        db.sql(
            "CREATE USER 'messenger'@'%' IDENTIFIED BY 'messenger';
             CREATE USER 'messenger'@'localhost' IDENTIFIED BY 'messenger';
             GRANT ALL ON *.* TO 'messenger'@'%';
             GRANT ALL ON *.* TO 'messenger'@'localhost';
             CREATE DATABASE messenger CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;",
        )
        .await?;
        Ok(db)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn socket(&self) -> String {
        self.dir.join("mysqld.sock").display().to_string()
    }

    pub fn url(&self) -> String {
        format!(
            "mysql://messenger:messenger@127.0.0.1:{}/messenger",
            self.port
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts the server on its data directory and port; returns once it answers.
    pub async fn start(&mut self) -> Result<()> {
        if self.server.is_some() {
            bail!("MariaDB is already running");
        }
        let child = Command::new("mariadbd")
            .arg(format!("--user={}", self.os_user))
            .arg(format!("--datadir={}", self.data().display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.socket()))
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mysqld.pid").display()
            ))
            .args([
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                "--max-connections=500",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
            ])
            .stdout(Stdio::null())
            .stderr(log_file(&self.dir, "mysqld.log")?)
            .kill_on_drop(true)
            .spawn()
            .context("start mariadbd")?;
        self.server = Some(child);
        let started = Instant::now();
        loop {
            let ping = Command::new("mariadb")
                .arg(format!("--socket={}", self.socket()))
                .arg(format!("-u{}", self.os_user))
                .args(["-e", "SELECT 1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            if ping.is_ok_and(|s| s.success()) {
                return Ok(());
            }
            if let Some(status) = self
                .server
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.server = None;
                bail!(
                    "mariadbd exited ({status}); see {}/mysqld.log",
                    self.dir.display()
                );
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!(
                    "mariadbd did not answer within 120 s; see {}/mysqld.log",
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server as an operator would (SIGTERM: it rolls back open transactions,
    /// closes every connection and exits); returns once it has exited.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.server.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            signal(pid, "TERM").await?;
        }
        match tokio::time::timeout(Duration::from_secs(120), child.wait()).await {
            Ok(status) => {
                status.context("wait for mariadbd")?;
                Ok(())
            }
            Err(_) => {
                let _ = child.kill().await;
                bail!("mariadbd did not stop within 120 s of SIGTERM (killed)")
            }
        }
    }

    /// Runs SQL as the administrator over the socket; the rows, tab-separated.
    pub async fn sql(&self, sql: &str) -> Result<String> {
        let out = Command::new("mariadb")
            .arg(format!("--socket={}", self.socket()))
            .arg(format!("-u{}", self.os_user))
            .args(["-N", "-B", "-e", sql])
            .output()
            .await
            .context("mariadb")?;
        if !out.status.success() {
            bail!("{sql}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.start_kill();
            // Let it go before its files do.
            for _ in 0..50 {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if !self.keep && self.dir.join("data").join("mysql").is_dir() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One server process (the `messenger` binary) on its own port.
pub struct Server {
    pub name: &'static str,
    bin: PathBuf,
    pub port: u16,
    env: Vec<(String, String)>,
    log_dir: PathBuf,
    child: Option<Child>,
}

impl Server {
    pub fn new(
        name: &'static str,
        bin: &Path,
        port: u16,
        env: Vec<(String, String)>,
        log_dir: &Path,
    ) -> Self {
        Self {
            name,
            bin: bin.to_path_buf(),
            port,
            env,
            log_dir: log_dir.to_path_buf(),
            child: None,
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the process (migrating first when `migrate`) and waits until `/health`
    /// answers 200.
    pub async fn start(&mut self, migrate: bool, http: &reqwest::Client) -> Result<()> {
        if self.child.is_some() {
            bail!("server {} is already running", self.name);
        }
        check_port_free(self.port, self.name)?;
        let log = log_file(&self.log_dir, &format!("server-{}.log", self.name))?;
        let child = Command::new(&self.bin)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("BIND_ADDR", format!("127.0.0.1:{}", self.port))
            .env("MIGRATE_ON_START", if migrate { "true" } else { "false" })
            .env("NO_COLOR", "1")
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", self.bin.display()))?;
        self.child = Some(child);
        let health = format!("{}/health", self.base());
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(&health).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!(
                    "server {} exited ({status}); see {}/server-{}.log",
                    self.name,
                    self.log_dir.display(),
                    self.name
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("server {} did not answer /health within 60 s", self.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9`: the process stops mid-whatever, as a crash or an OOM kill stops it.
    pub async fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await.context("kill -9")?;
        }
        Ok(())
    }

    /// SIGTERM, as at a deployment (the server drains its sends, then exits).
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                signal(pid, "TERM").await?;
            }
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
                child.kill().await?;
            }
        }
        Ok(())
    }
}
