//! `messenger admin …`: an operator's commands, run with the server's own configuration
//! (the same variables) against its database, from any machine that reaches it — for
//! example as a one-off ECS task, like `migrate`.
//!
//! Each command refuses bad input with one line on stderr and exit code 2, and fails
//! with exit code 1 when the database does. Passwords come from stdin (one line), never
//! from the command line, where other users of the machine could read them.

use std::io::{BufRead, Write};

use clap::Subcommand;

use crate::{
    auth::password::PasswordHasher,
    config::Config,
    db::{self, Db},
    domain::{Email, Password, Username},
    store::{
        access,
        users::{self, Taken, User},
    },
};

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Create an account; its password is read from stdin (one line)
    CreateUser {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
    },
    /// Set an account's password to one read from stdin (one line), and sign the account
    /// out everywhere
    ResetPassword {
        /// The account's username or email
        account: String,
    },
    /// Disable an account: it can no longer sign in, and is signed out everywhere (page
    /// sessions at once, bearer tokens within a second)
    Disable {
        /// The account's username or email
        account: String,
    },
    /// Let a disabled account sign in again (its old sessions and tokens stay void)
    Enable {
        /// The account's username or email
        account: String,
    },
    /// List every account: id, username, email, and whether it is disabled
    ListUsers,
    /// How many users, messages, events and sessions the database holds
    Counts,
}

/// Why a command did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The input was wrong: exit code 2.
    #[error("{0}")]
    Refused(String),
    /// Something else failed (the database): exit code 1.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AdminError {
    fn from(e: sqlx::Error) -> Self {
        Self::Failed(e.into())
    }
}

fn refused(message: impl Into<String>) -> AdminError {
    AdminError::Refused(message.into())
}

/// Runs `command` against the configured database; what it reports goes to `out`.
pub async fn run(
    config: &Config,
    command: AdminCommand,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    // The input is checked before anything is asked of the database.
    let parsed = match &command {
        AdminCommand::CreateUser { username, email } => {
            let username = Username::parse(username).map_err(|_| {
                refused(format!("invalid username: {username:?} ({RULES_USERNAME})"))
            })?;
            let email =
                Email::parse(email).map_err(|_| refused(format!("invalid email: {email:?}")))?;
            Some((username, email, read_password(stdin)?))
        }
        _ => None,
    };
    let new_password = match &command {
        AdminCommand::ResetPassword { .. } => Some(read_password(stdin)?),
        _ => None,
    };
    let db = Db::connect(config.database_url.expose(), 2)
        .await
        .map_err(anyhow::Error::from)?;
    if config.migrate_on_start {
        db.migrate().await.map_err(anyhow::Error::from)?;
    }
    let result = execute(config, &db, command, parsed, new_password, out).await;
    db.close().await;
    result
}

async fn execute(
    config: &Config,
    db: &Db,
    command: AdminCommand,
    parsed: Option<(Username, Email, Password)>,
    new_password: Option<Password>,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let write = |out: &mut dyn Write, line: String| {
        writeln!(out, "{line}").map_err(|e| AdminError::Failed(e.into()))
    };
    match command {
        AdminCommand::CreateUser { .. } => {
            let (username, email, password) = parsed.expect("parsed above");
            let hash = PasswordHasher::new(config.argon2)?.hash(&password).await?;
            match users::create(db, &username, &email, &hash).await? {
                Ok(user_id) => write(
                    out,
                    format!("created user {user_id} ({})", username.as_str()),
                ),
                Err(Taken::Email) => Err(refused(format!(
                    "an account with email {} already exists",
                    email.as_str()
                ))),
                Err(Taken::Username) => {
                    Err(refused(format!("username {} is taken", username.as_str())))
                }
            }
        }
        AdminCommand::ResetPassword { account } => {
            let user = find(db, &account).await?;
            let password = new_password.expect("read above");
            let hash = PasswordHasher::new(config.argon2)?.hash(&password).await?;
            users::set_password_hash(db, user.user_id, &hash).await?;
            let sessions = sign_out_everywhere(db, &user, false).await?;
            write(
                out,
                format!(
                    "password of {} (user {}) reset; signed out everywhere (page sessions ended: {sessions})",
                    user.username, user.user_id
                ),
            )
        }
        AdminCommand::Disable { account } => {
            let user = find(db, &account).await?;
            let sessions = sign_out_everywhere(db, &user, true).await?;
            write(
                out,
                format!(
                    "{} (user {}) disabled; signed out everywhere (page sessions ended: {sessions})",
                    user.username, user.user_id
                ),
            )
        }
        AdminCommand::Enable { account } => {
            let user = find(db, &account).await?;
            let line = if access::enable(db, user.user_id).await? {
                format!("{} (user {}) enabled", user.username, user.user_id)
            } else {
                format!("{} (user {}) was not disabled", user.username, user.user_id)
            };
            write(out, line)
        }
        AdminCommand::ListUsers => {
            let accounts = access::accounts(db).await?;
            write(out, "id\tusername\temail\tstatus".to_string())?;
            for a in accounts {
                let status = match a.disabled_at {
                    Some(at) => format!(
                        "disabled since {} UTC",
                        at.replace_nanosecond(0).unwrap_or(at)
                    ),
                    None => "active".to_string(),
                };
                write(
                    out,
                    format!("{}\t{}\t{}\t{status}", a.user_id, a.username, a.email),
                )?;
            }
            Ok(())
        }
        AdminCommand::Counts => {
            let c = access::counts(db).await?;
            write(
                out,
                format!(
                    "users {}\ndisabled users {}\nmessages {}\nevents {}\nsessions {}",
                    c.users, c.disabled_users, c.messages, c.events, c.sessions
                ),
            )
        }
    }
}

const RULES_USERNAME: &str =
    "3 to 25 letters, digits, '_' or '.', not at either end, no two of '_' and '.' in a row";
const RULES_PASSWORD: &str =
    "at least 8 characters, with an uppercase letter, a lowercase letter and a digit";

/// One line of stdin, without its line ending, as a valid password.
fn read_password(stdin: &mut dyn BufRead) -> Result<Password, AdminError> {
    let mut line = String::new();
    stdin
        .read_line(&mut line)
        .map_err(|e| refused(format!("cannot read the password from stdin: {e}")))?;
    let line = line.trim_end_matches(['\r', '\n']);
    if line.is_empty() {
        return Err(refused(
            "no password on stdin: pipe one line, e.g. `read -rs P; printf '%s\\n' \"$P\" | messenger admin …`",
        ));
    }
    Password::parse(line).map_err(|_| refused(format!("invalid password: {RULES_PASSWORD}")))
}

/// The account a command names by username or email.
async fn find(db: &Db, account: &str) -> Result<User, AdminError> {
    users::by_login(db, account.trim())
        .await?
        .ok_or_else(|| refused(format!("no account with username or email {account:?}")))
}

/// Voids every credential of `user` issued until now (and with `disable`, the account):
/// page sessions are deleted; bearer tokens are refused by every process within a
/// second (`auth::access`). Returns how many sessions ended.
async fn sign_out_everywhere(db: &Db, user: &User, disable: bool) -> Result<u64, AdminError> {
    let now = db::now();
    let at = time::OffsetDateTime::now_utc().unix_timestamp();
    access::sign_out_everywhere(db, user.user_id, disable, now, at).await?;
    Ok(access::delete_sessions_of(db, user.user_id).await?)
}
