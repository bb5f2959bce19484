//! Request verification for webhooks: pure functions over the secret, the headers and the raw
//! body. Every comparison of a secret-derived value is constant-time (`hmac`'s `verify_slice`
//! for signatures; `subtle` over SHA-256 digests for tokens, so not even the length leaks).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The Slack v0 replay window: a request older (or newer) than this is refused.
pub const SLACK_WINDOW_SECS: i64 = 5 * 60;

pub use crate::workflow::trigger::Method;

/// Why a request was refused (for the log; the client only gets 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the hook has no secret configured: every request is refused")]
    NoSecret,
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed header {0}")]
    Malformed(&'static str),
    #[error("signature does not match")]
    BadSignature,
    #[error("token does not match")]
    BadToken,
    #[error("timestamp is {age_secs} s away from now (the window is ±300 s)")]
    Stale { age_secs: i64 },
}

fn hmac_of(secret: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    for p in parts {
        mac.update(p);
    }
    mac
}

/// `sha256=<hex>` or `v0=<hex>`: the decoded digest, or why not.
fn decode(header: Option<&str>, name: &'static str, prefix: &str) -> Result<Vec<u8>, Refusal> {
    let value = header.ok_or(Refusal::MissingHeader(name))?.trim();
    let hex_part = value.strip_prefix(prefix).ok_or(Refusal::Malformed(name))?;
    hex::decode(hex_part).map_err(|_| Refusal::Malformed(name))
}

/// GitHub's `X-Hub-Signature-256`.
pub fn github(secret: &[u8], body: &[u8], signature: Option<&str>) -> Result<(), Refusal> {
    let sig = decode(signature, "X-Hub-Signature-256", "sha256=")?;
    hmac_of(secret, &[body])
        .verify_slice(&sig)
        .map_err(|_| Refusal::BadSignature)
}

/// Slack's v0 signature; `now` is the current Unix time in seconds.
pub fn slack(
    secret: &[u8],
    body: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    now: i64,
) -> Result<(), Refusal> {
    let ts_text = timestamp
        .ok_or(Refusal::MissingHeader("X-Slack-Request-Timestamp"))?
        .trim();
    let ts: i64 = ts_text
        .parse()
        .map_err(|_| Refusal::Malformed("X-Slack-Request-Timestamp"))?;
    let age = now.saturating_sub(ts);
    if age.abs() > SLACK_WINDOW_SECS {
        return Err(Refusal::Stale { age_secs: age });
    }
    let sig = decode(signature, "X-Slack-Signature", "v0=")?;
    hmac_of(secret, &[b"v0:", ts_text.as_bytes(), b":", body])
        .verify_slice(&sig)
        .map_err(|_| Refusal::BadSignature)
}

/// Constant-time equality of two tokens (compared as SHA-256 digests: equal length always).
fn same_token(a: &[u8], b: &[u8]) -> bool {
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    bool::from(da.as_slice().ct_eq(db.as_slice()))
}

/// Telegram's `X-Telegram-Bot-Api-Secret-Token`.
pub fn telegram(secret: &[u8], token: Option<&str>) -> Result<(), Refusal> {
    let token = token.ok_or(Refusal::MissingHeader("X-Telegram-Bot-Api-Secret-Token"))?;
    if same_token(secret, token.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::BadToken)
    }
}

/// `Authorization: Bearer <token>` (the scheme's name in any case).
pub fn bearer(secret: &[u8], authorization: Option<&str>) -> Result<(), Refusal> {
    let value = authorization.ok_or(Refusal::MissingHeader("Authorization"))?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(Refusal::Malformed("Authorization"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Refusal::Malformed("Authorization"));
    }
    if same_token(secret, token.trim().as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::BadToken)
    }
}

/// Checks a request with `method`. `header` looks a header up by name (case-insensitive);
/// `now` is the Unix time in seconds. An empty secret refuses everything (fail-closed).
pub fn verify(
    method: Method,
    secret: &[u8],
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    now: i64,
) -> Result<(), Refusal> {
    if secret.is_empty() {
        return Err(Refusal::NoSecret);
    }
    match method {
        Method::HmacSha256 => github(secret, body, header("x-hub-signature-256").as_deref()),
        Method::Slack => slack(
            secret,
            body,
            header("x-slack-request-timestamp").as_deref(),
            header("x-slack-signature").as_deref(),
            now,
        ),
        Method::Telegram => telegram(secret, header("x-telegram-bot-api-secret-token").as_deref()),
        Method::Bearer => bearer(secret, header("authorization").as_deref()),
    }
}

/// The header value a sender would compute (for tests, docs and `curl` examples).
pub fn sign(method: Method, secret: &[u8], body: &[u8], timestamp: i64) -> String {
    match method {
        Method::HmacSha256 => format!(
            "sha256={}",
            hex::encode(hmac_of(secret, &[body]).finalize().into_bytes())
        ),
        Method::Slack => format!(
            "v0={}",
            hex::encode(
                hmac_of(
                    secret,
                    &[b"v0:", timestamp.to_string().as_bytes(), b":", body]
                )
                .finalize()
                .into_bytes()
            )
        ),
        Method::Telegram => String::from_utf8_lossy(secret).into_owned(),
        Method::Bearer => format!("Bearer {}", String::from_utf8_lossy(secret)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // GitHub's documented example (docs: "Validating webhook deliveries").
    const GH_SECRET: &[u8] = b"It's a Secret to Everybody";
    const GH_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    // Slack's documented example (docs: "Verifying requests from Slack").
    const SLACK_SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const SLACK_TS: &str = "1531420618";
    const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn github_documented_example() {
        assert_eq!(github(GH_SECRET, b"Hello, World!", Some(GH_SIG)), Ok(()));
        assert_eq!(
            sign(Method::HmacSha256, GH_SECRET, b"Hello, World!", 0),
            GH_SIG
        );
    }

    #[test]
    fn github_refusals() {
        assert_eq!(
            github(GH_SECRET, b"Hello, World?", Some(GH_SIG)),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            github(b"another secret", b"Hello, World!", Some(GH_SIG)),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            github(GH_SECRET, b"Hello, World!", None),
            Err(Refusal::MissingHeader("X-Hub-Signature-256"))
        );
        assert_eq!(
            github(GH_SECRET, b"Hello, World!", Some("sha1=abcd")),
            Err(Refusal::Malformed("X-Hub-Signature-256"))
        );
        assert_eq!(
            github(GH_SECRET, b"Hello, World!", Some("sha256=zz")),
            Err(Refusal::Malformed("X-Hub-Signature-256"))
        );
        // A truncated signature is a mismatch, not a prefix match.
        assert_eq!(
            github(GH_SECRET, b"Hello, World!", Some(&GH_SIG[..21])),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn slack_documented_example() {
        let now: i64 = 1_531_420_618 + 10;
        assert_eq!(
            slack(
                SLACK_SECRET,
                SLACK_BODY.as_bytes(),
                Some(SLACK_TS),
                Some(SLACK_SIG),
                now
            ),
            Ok(())
        );
        assert_eq!(
            sign(
                Method::Slack,
                SLACK_SECRET,
                SLACK_BODY.as_bytes(),
                1_531_420_618
            ),
            SLACK_SIG
        );
    }

    #[test]
    fn slack_refusals() {
        let body = SLACK_BODY.as_bytes();
        let ts = 1_531_420_618;
        // Stale, both ways, just past the window; just inside passes.
        assert_eq!(
            slack(
                SLACK_SECRET,
                body,
                Some(SLACK_TS),
                Some(SLACK_SIG),
                ts + 301
            ),
            Err(Refusal::Stale { age_secs: 301 })
        );
        assert_eq!(
            slack(
                SLACK_SECRET,
                body,
                Some(SLACK_TS),
                Some(SLACK_SIG),
                ts - 301
            ),
            Err(Refusal::Stale { age_secs: -301 })
        );
        assert_eq!(
            slack(
                SLACK_SECRET,
                body,
                Some(SLACK_TS),
                Some(SLACK_SIG),
                ts + 300
            ),
            Ok(())
        );
        // A replay with a fresh timestamp does not carry the old signature.
        let now = ts + 1000;
        assert_eq!(
            slack(
                SLACK_SECRET,
                body,
                Some(&now.to_string()),
                Some(SLACK_SIG),
                now
            ),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            slack(SLACK_SECRET, body, None, Some(SLACK_SIG), ts),
            Err(Refusal::MissingHeader("X-Slack-Request-Timestamp"))
        );
        assert_eq!(
            slack(SLACK_SECRET, body, Some(SLACK_TS), None, ts),
            Err(Refusal::MissingHeader("X-Slack-Signature"))
        );
        assert_eq!(
            slack(SLACK_SECRET, body, Some("soon"), Some(SLACK_SIG), ts),
            Err(Refusal::Malformed("X-Slack-Request-Timestamp"))
        );
        assert_eq!(
            slack(
                SLACK_SECRET,
                b"token=other",
                Some(SLACK_TS),
                Some(SLACK_SIG),
                ts
            ),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn telegram_and_bearer() {
        assert_eq!(telegram(b"s3cret-Token", Some("s3cret-Token")), Ok(()));
        // Case-sensitive, whole value.
        assert_eq!(
            telegram(b"s3cret-Token", Some("s3cret-token")),
            Err(Refusal::BadToken)
        );
        assert_eq!(
            telegram(b"s3cret-Token", Some("s3cret")),
            Err(Refusal::BadToken)
        );
        assert_eq!(
            telegram(b"s3cret-Token", None),
            Err(Refusal::MissingHeader("X-Telegram-Bot-Api-Secret-Token"))
        );
        assert_eq!(bearer(b"tok", Some("Bearer tok")), Ok(()));
        assert_eq!(bearer(b"tok", Some("bearer tok")), Ok(()));
        assert_eq!(bearer(b"tok", Some("Bearer tok2")), Err(Refusal::BadToken));
        assert_eq!(
            bearer(b"tok", Some("Basic dG9r")),
            Err(Refusal::Malformed("Authorization"))
        );
        assert_eq!(
            bearer(b"tok", Some("tok")),
            Err(Refusal::Malformed("Authorization"))
        );
        assert_eq!(
            bearer(b"tok", None),
            Err(Refusal::MissingHeader("Authorization"))
        );
    }

    #[test]
    fn an_empty_secret_refuses_everything() {
        let no = |_: &str| -> Option<String> { Some(String::new()) };
        for m in Method::ALL {
            assert_eq!(verify(m, b"", &no, b"", 0), Err(Refusal::NoSecret), "{m:?}");
        }
        // Not even a request "signed" with the empty key passes.
        let sig = sign(Method::HmacSha256, b"", b"x", 0);
        let h = move |name: &str| (name == "x-hub-signature-256").then(|| sig.clone());
        assert_eq!(
            verify(Method::HmacSha256, b"", &h, b"x", 0),
            Err(Refusal::NoSecret)
        );
    }
}
