//! The harness of the integration binary (`harness = false`, run by libtest-mimic).
//!
//! Each test registers itself through [`both_backends!`] or [`integration_test!`] and says
//! what it needs beyond SQLite: MySQL (`TEST_MYSQL_URL`) or a browser (chromedriver).
//! Where this machine lacks one, the test is reported as *ignored*, not as passed, and
//! the run ends with a line telling how to include it; under `CI=true` it runs and fails.
//! Every async test gets its own multi-threaded tokio runtime with two workers.

use std::{future::Future, pin::Pin};

use libtest_mimic::{Arguments, Conclusion, Failed, Trial};

/// Something a test needs that a developer's machine may lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    MySql,
    Browser,
    /// python3 able to make a virtualenv (the socket.io tests' client library comes from
    /// PyPI into one).
    Python,
    /// nginx (Debian's, at /usr/sbin/nginx) and openssl, for the proxy test.
    Nginx,
    /// MariaDB's programs (mariadbd, mariadb-install-db), for tests that start and stop a
    /// database server of their own.
    MariaDb,
}

impl Need {
    /// Why a test that needs this cannot run here, and how to fix it; `None` when it can.
    fn unmet(self) -> Option<&'static str> {
        match self {
            Need::MySql if mysql_url().is_none() => Some(
                "needs MySQL, and TEST_MYSQL_URL is not set: eval \"$(scripts/start_test_db.sh)\"",
            ),
            Need::Browser if chromedriver().is_none() => Some(
                "needs a browser, and chromedriver was not found (CHROMEDRIVER, PATH): \
                 apt-get install chromium chromium-driver",
            ),
            Need::MariaDb if !mariadb_installed() => Some(
                "needs mariadbd and mariadb-install-db on PATH: apt-get install mariadb-server",
            ),
            Need::Nginx if !nginx_available() => Some(
                "needs /usr/sbin/nginx and openssl: apt-get install nginx openssl",
            ),
            Need::Python if !python_venv_available() => Some(
                "needs python3 with venv for the python-socketio client: apt-get install python3-venv",
            ),
            _ => None,
        }
    }

    fn how_to_include(self) -> &'static str {
        match self {
            Need::MySql => "MySQL (run eval \"$(scripts/start_test_db.sh)\" first)",
            Need::Browser => "a browser (apt-get install chromium chromium-driver)",
            Need::Python => "python3 with venv (apt-get install python3-venv)",
            Need::Nginx => "nginx (apt-get install nginx openssl)",
            Need::MariaDb => "MariaDB's server programs (apt-get install mariadb-server)",
        }
    }
}

pub type TestFuture = Pin<Box<dyn Future<Output = ()>>>;

#[derive(Clone, Copy)]
pub enum Run {
    Sync(fn()),
    Async(fn() -> TestFuture),
}

/// One registered test case.
pub struct Test {
    /// `module_path!()` where the case was declared; the crate name is dropped from it.
    pub module: &'static str,
    pub name: &'static str,
    pub needs: &'static [Need],
    pub run: Run,
}

inventory::collect!(Test);

impl Test {
    /// The name libtest would give it: `friends::decline_block_and_unblock::mysql`.
    fn full_name(&self) -> String {
        match self.module.split_once("::") {
            Some((_crate, path)) => format!("{path}::{}", self.name),
            None => self.name.to_string(),
        }
    }

    /// Runs the test on a thread named after it, as libtest does, so that a panic
    /// message says which test it came from.
    fn execute(&self, name: String) -> Result<(), Failed> {
        if let Some(reason) = self.needs.iter().find_map(|need| need.unmet()) {
            return Err(reason.into());
        }
        let run = self.run;
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || match run {
                Run::Sync(test) => test(),
                Run::Async(test) => tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(format!("{name} (runtime)"))
                    .enable_all()
                    .build()
                    .expect("a tokio runtime")
                    .block_on(test()),
            })
            .expect("a test thread");
        match thread.join() {
            Ok(()) => Ok(()),
            // Already reported by the panic hook; libtest-mimic records it as a failure.
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// Runs the registered tests as the command line (libtest's flags) asks, prints the
/// summary and, when tests were ignored for something missing, how to include them.
pub fn run() -> Conclusion {
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = std::env::var("RUST_TEST_THREADS")
            .ok()
            .and_then(|n| n.parse().ok());
    }
    let ci = in_ci();
    let missing: Vec<Need> = [
        Need::MySql,
        Need::Browser,
        Need::Python,
        Need::Nginx,
        Need::MariaDb,
    ]
    .into_iter()
    .filter(|need| need.unmet().is_some())
    .collect();
    let mut tests: Vec<&'static Test> = inventory::iter::<Test>.into_iter().collect();
    tests.sort_by_cached_key(|test| test.full_name());
    let mut lacking = Vec::new();
    let trials = tests
        .into_iter()
        .map(|test| {
            let ignored = !ci && test.needs.iter().any(|need| missing.contains(need));
            let name = test.full_name();
            let trial =
                Trial::test(name.clone(), move || test.execute(name)).with_ignored_flag(ignored);
            if ignored && !args.is_filtered_out(&trial) {
                lacking.extend(test.needs.iter().filter(|need| missing.contains(need)));
            }
            trial
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if conclusion.num_ignored > 0 && !lacking.is_empty() {
        let needs: Vec<&str> = missing
            .iter()
            .filter(|need| lacking.contains(need))
            .map(|need| need.how_to_include())
            .collect();
        println!(
            "note: {} tests ignored: they need {}; CI=true fails them instead\n",
            conclusion.num_ignored,
            needs.join(" or ")
        );
    }
    conclusion
}

/// CI runs everything: there a missing database or browser is a failure, not a skip.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The MySQL server the tests create their databases in, if one was given.
pub fn mysql_url() -> Option<String> {
    std::env::var("TEST_MYSQL_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// Whether MariaDB's server programs are on PATH.
fn mariadb_installed() -> bool {
    ["mariadbd", "mariadb-install-db", "mariadb"]
        .iter()
        .all(|program| {
            std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
            })
        })
}

/// Whether the proxy test's nginx and the openssl it makes a certificate with are here.
fn nginx_available() -> bool {
    std::path::Path::new("/usr/sbin/nginx").exists()
        && std::process::Command::new("openssl")
            .arg("version")
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Whether python3 can make a virtualenv with pip in it.
fn python_venv_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::process::Command::new("python3")
            .args(["-c", "import venv, ensurepip"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

pub fn chromedriver() -> Option<String> {
    find_program("chromedriver", "CHROMEDRIVER")
}

/// A program named by the `env` variable, else found on `PATH` or where Debian puts it.
pub fn find_program(binary: &str, env: &str) -> Option<String> {
    if let Some(path) = std::env::var(env).ok().filter(|p| !p.is_empty()) {
        return Some(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"]
                .iter()
                .map(Into::into),
        )
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
        .map(|found| found.display().to_string())
}

/// Declares test cases that run once on SQLite and once on MySQL, as
/// `module::name::sqlite` and `module::name::mysql`; each gets a fresh app:
///
/// ```ignore
/// both_backends! {
///     /// What it shows.
///     #[needs(browser)]          // optional: `mysql`, `browser`
///     async fn name(app) { … }
/// }
/// ```
#[macro_export]
macro_rules! both_backends {
    () => {};
    (
        $(#[doc = $doc:literal])*
        $(#[needs($($need:ident),+ $(,)?)])?
        async fn $name:ident($app:ident) $body:block
        $($rest:tt)*
    ) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn test_body($app: $crate::helpers::TestApp) $body

            ::inventory::submit! {
                $crate::harness::Test {
                    module: module_path!(),
                    name: "sqlite",
                    needs: &[$($($crate::__need!($need)),+)?],
                    run: $crate::harness::Run::Async(|| ::std::boxed::Box::pin(async {
                        test_body($crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await).await
                    })),
                }
            }

            ::inventory::submit! {
                $crate::harness::Test {
                    module: module_path!(),
                    name: "mysql",
                    needs: &[$crate::harness::Need::MySql, $($($crate::__need!($need)),+)?],
                    run: $crate::harness::Run::Async(|| ::std::boxed::Box::pin(async {
                        test_body($crate::helpers::spawn_app($crate::helpers::Backend::MySql).await).await
                    })),
                }
            }
        }

        $crate::both_backends! { $($rest)* }
    };
}

/// Declares single tests, `async fn` (on their own runtime) or plain `fn`, each with what
/// it needs beyond SQLite:
///
/// ```ignore
/// integration_test! {
///     /// What it shows.
///     #[needs(mysql)]            // optional: `mysql`, `browser`
///     async fn name() { … }
///
///     fn another() { … }
/// }
/// ```
#[macro_export]
macro_rules! integration_test {
    () => {};
    (
        $(#[doc = $doc:literal])*
        $(#[needs($($need:ident),+ $(,)?)])?
        async fn $name:ident() $body:block
        $($rest:tt)*
    ) => {
        $(#[doc = $doc])*
        async fn $name() $body

        ::inventory::submit! {
            $crate::harness::Test {
                module: module_path!(),
                name: stringify!($name),
                needs: &[$($($crate::__need!($need)),+)?],
                run: $crate::harness::Run::Async(|| ::std::boxed::Box::pin($name())),
            }
        }

        $crate::integration_test! { $($rest)* }
    };
    (
        $(#[doc = $doc:literal])*
        $(#[needs($($need:ident),+ $(,)?)])?
        fn $name:ident() $body:block
        $($rest:tt)*
    ) => {
        $(#[doc = $doc])*
        fn $name() $body

        ::inventory::submit! {
            $crate::harness::Test {
                module: module_path!(),
                name: stringify!($name),
                needs: &[$($($crate::__need!($need)),+)?],
                run: $crate::harness::Run::Sync($name),
            }
        }

        $crate::integration_test! { $($rest)* }
    };
}

/// `mysql` and `browser` in `#[needs(…)]`.
#[doc(hidden)]
#[macro_export]
macro_rules! __need {
    (mysql) => {
        $crate::harness::Need::MySql
    };
    (browser) => {
        $crate::harness::Need::Browser
    };
    (python) => {
        $crate::harness::Need::Python
    };
    (nginx) => {
        $crate::harness::Need::Nginx
    };
    (mariadb) => {
        $crate::harness::Need::MariaDb
    };
}
