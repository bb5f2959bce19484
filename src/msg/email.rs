//! The email channel: SMTP through lettre, STARTTLS (the default), implicit TLS (port 465 or
//! `SMTP_TLS=tls`) or none (`SMTP_TLS=none`, for a relay on the same machine), AUTH when
//! `SMTP_USER` is set. The seed's subject rule: the first line is the subject when a body
//! follows it, else "claw notification".

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::Creds;
use super::channels::SendError;

#[derive(Debug, Clone)]
pub struct Smtp {
    host: String,
    port: u16,
    user: Option<String>,
    pass: Option<String>,
    from: String,
    tls: String,
    verify: bool,
}

impl Smtp {
    pub fn configure(creds: &Creds) -> Result<Self, String> {
        let host = creds.get("SMTP_HOST").ok_or(
            "email is not configured: set SMTP_HOST (and SMTP_USER, SMTP_PASS, SMTP_FROM)",
        )?;
        let port: u16 = creds
            .get("SMTP_PORT")
            .unwrap_or("587")
            .parse()
            .map_err(|_| "SMTP_PORT must be a port number".to_owned())?;
        let user = creds.get("SMTP_USER").map(str::to_owned);
        let from = creds
            .get("SMTP_FROM")
            .map(str::to_owned)
            .or_else(|| user.clone().filter(|u| u.contains('@')))
            .ok_or("email needs SMTP_FROM (or an SMTP_USER that is an address)")?;
        let tls = match creds.get("SMTP_TLS") {
            Some(t @ ("starttls" | "tls" | "none")) => t.to_owned(),
            Some(other) => {
                return Err(format!(
                    "SMTP_TLS must be starttls, tls or none, not {other:?}"
                ));
            }
            None if port == 465 => "tls".to_owned(),
            None => "starttls".to_owned(),
        };
        let verify = !matches!(creds.get("SMTP_TLS_VERIFY"), Some("false" | "0" | "no"));
        Ok(Self {
            host: host.to_owned(),
            port,
            user,
            pass: creds.get("SMTP_PASS").map(str::to_owned),
            from,
            tls,
            verify,
        })
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
        let params = || {
            TlsParameters::builder(self.host.clone())
                .dangerous_accept_invalid_certs(!self.verify)
                .build()
                .map_err(|e| fatal(format!("email: TLS set-up: {e}")))
        };
        let tls = match self.tls.as_str() {
            "tls" => Tls::Wrapper(params()?),
            "none" => Tls::None,
            _ => Tls::Required(params()?),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host.clone())
            .port(self.port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(15)));
        if let Some(u) = &self.user {
            b = b.credentials(Credentials::new(
                u.clone(),
                self.pass.clone().unwrap_or_default(),
            ));
        }
        Ok(b.build())
    }

    pub async fn send(&self, to: &str, text: &str) -> Result<String, SendError> {
        let (subject, body) = subject_and_body(text);
        let message = Message::builder()
            .from(
                self.from
                    .parse()
                    .map_err(|e| fatal(format!("email: SMTP_FROM {:?}: {e}", self.from)))?,
            )
            .to(to
                .parse()
                .map_err(|e| fatal(format!("email: the target {to:?} is not an address: {e}")))?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| fatal(format!("email: {e}")))?;
        match self.transport()?.send(message).await {
            Ok(r) => Ok(format!(
                "smtp {}",
                r.message().next().unwrap_or("accepted").trim()
            )),
            Err(e) => Err(SendError {
                retryable: !e.is_permanent(),
                message: format!("email: {e}"),
                retry_after: None,
            }),
        }
    }

    pub async fn check(&self) -> Result<String, SendError> {
        match self.transport()?.test_connection().await {
            Ok(true) => Ok(format!(
                "{}:{} accepts the connection",
                self.host, self.port
            )),
            Ok(false) => Err(fatal(format!("email: {}:{} refused", self.host, self.port))),
            Err(e) => Err(fatal(format!("email: {e}"))),
        }
    }
}

fn fatal(message: String) -> SendError {
    SendError {
        message,
        retryable: false,
        retry_after: None,
    }
}

/// The seed's rule: the first line is the subject when a body follows, else a fixed subject.
pub fn subject_and_body(text: &str) -> (String, String) {
    match text.split_once('\n') {
        Some((first, rest)) if !first.trim().is_empty() && !rest.trim().is_empty() => (
            first.trim().to_owned(),
            rest.trim_start_matches('\n').to_owned(),
        ),
        _ => ("claw notification".to_owned(), text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::subject_and_body;

    #[test]
    fn the_first_line_is_the_subject_only_when_a_body_follows() {
        assert_eq!(
            subject_and_body("Backup failed\nexit 3 on nas"),
            ("Backup failed".to_owned(), "exit 3 on nas".to_owned())
        );
        assert_eq!(
            subject_and_body("just one line"),
            ("claw notification".to_owned(), "just one line".to_owned())
        );
    }
}
