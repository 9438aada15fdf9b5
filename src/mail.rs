//! Outgoing mail (password resets, address checks), sent off the request path.
//!
//! A request only queues its mail; one task per process sends the queue over SMTP
//! (`SMTP_URL`, through lettre: plain for a relay on localhost, STARTTLS or TLS with
//! rustls otherwise), retrying a failed delivery a few times. Without `SMTP_URL` (a
//! laptop) each mail's text, link included, is written to the log with a warning, so a
//! developer can still follow it. A request never waits for, or learns the fate of, a
//! delivery: the answer to "reset my password" must not tell whether mail went out.

use std::time::Duration;

use anyhow::Context;
use lettre::{
    message::{header::ContentType, Mailbox},
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Mail waiting to be sent; beyond this a new one is dropped (and logged).
const QUEUE_DEPTH: usize = 1000;
const ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// The handle requests queue mail through; cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    queue: mpsc::Sender<Mail>,
}

impl Mailer {
    /// Starts the sending task; it stops at `shutdown`, after what is queued.
    pub fn start(config: &Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let from: Mailbox = config
            .mail_from
            .parse()
            .context("MAIL_FROM: not a mailbox")?;
        let transport = match &config.smtp_url {
            Some(url) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    .context("SMTP_URL")?
                    .timeout(Some(Duration::from_secs(20)))
                    .build(),
            ),
            None => None,
        };
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(deliver(transport, from, receiver, shutdown));
        Ok(Self { queue })
    }

    /// Queues a mail; never waits.
    pub fn send(&self, mail: Mail) {
        if let Err(e) = self.queue.try_send(mail) {
            tracing::error!(error = %e, "mail queue full or closed: a mail was dropped");
        }
    }
}

async fn deliver(
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    mut queue: mpsc::Receiver<Mail>,
    shutdown: CancellationToken,
) {
    loop {
        let mail = tokio::select! {
            mail = queue.recv() => match mail {
                Some(mail) => mail,
                None => return,
            },
            _ = shutdown.cancelled() => return,
        };
        let Some(transport) = &transport else {
            tracing::warn!(
                to = %mail.to,
                subject = %mail.subject,
                "SMTP_URL is not set, so this mail was not sent; its text:\n{}",
                mail.body
            );
            continue;
        };
        let message = match build(&from, &mail) {
            Ok(message) => message,
            Err(e) => {
                tracing::error!(error = %e, "could not build a mail");
                continue;
            }
        };
        for attempt in 1..=ATTEMPTS {
            match transport.send(message.clone()).await {
                Ok(_) => {
                    tracing::info!(subject = %mail.subject, "mail sent");
                    break;
                }
                Err(e) if attempt < ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "sending mail failed; retrying");
                    tokio::time::sleep(Duration::from_secs(2u64.pow(attempt))).await;
                }
                Err(e) => tracing::error!(error = %e, "sending mail failed; giving up"),
            }
        }
    }
}

fn build(from: &Mailbox, mail: &Mail) -> anyhow::Result<Message> {
    Ok(Message::builder()
        .from(from.clone())
        .to(mail.to.parse().context("recipient")?)
        .subject(&mail.subject)
        .header(ContentType::TEXT_PLAIN)
        .body(mail.body.clone())?)
}
