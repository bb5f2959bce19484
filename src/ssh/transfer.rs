//! Files over SFTP on a pooled connection. An upload goes to a temporary name beside the target,
//! gets its mode, is checked (`sha256sum` on the host against the local file) and only then is
//! renamed over the target (one `rename(2)`: readers see the old file or the new one). A download
//! is written beside its local target, checked the same way, and renamed into place.

use std::path::Path;
use std::time::Duration;

use russh_sftp::client::SftpSession;
use russh_sftp::protocol::FileAttributes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::client::{Command, Pool, quote};
use super::hosts::Host;
use crate::audit::{Action, AuditLog, Event};

/// What a transfer did.
#[derive(Debug, Clone)]
pub struct Transferred {
    pub bytes: u64,
    pub sha256: String,
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256sum` of a file on the host.
async fn remote_sha256(pool: &Pool, host: &Host, path: &str) -> Result<String, String> {
    let cmd = Command {
        command: format!("sha256sum -- {}", quote(path)),
        env: Vec::new(),
        timeout: Duration::from_secs(300),
        sudo: false,
    };
    let out = pool
        .run(host, &cmd, &CancellationToken::new(), &mut |_, _| {})
        .await;
    if !out.ok() {
        return Err(format!(
            "cannot checksum {path} on {}: {}",
            host.alias,
            out.error
                .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_owned())
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

async fn session(pool: &Pool, host: &Host) -> Result<SftpSession, String> {
    let channel = pool.open_channel(host).await.map_err(|e| e.to_string())?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| format!("{} refused the sftp subsystem: {e}", host.alias))?;
    SftpSession::new(channel.into_stream())
        .await
        .map_err(|e| format!("cannot start SFTP on {}: {e}", host.alias))
}

fn audit(pool: &Pool, host: &Host, what: &str, detail: serde_json::Value, ok: bool) {
    let settings = pool.settings();
    let _ = AuditLog::in_dir(&settings.home).record(&Event::new(
        &settings.actor,
        Action::SshTransfer,
        &host.alias,
        if ok { "ok" } else { "failed" },
        serde_json::json!({"direction": what, "detail": detail}),
    ));
}

/// Uploads `local` to `remote` on `host` with `mode`.
pub async fn upload(
    pool: &Pool,
    host: &Host,
    local: &Path,
    remote: &str,
    mode: u32,
) -> Result<Transferred, String> {
    let r = upload_inner(pool, host, local, remote, mode).await;
    audit(
        pool,
        host,
        "upload",
        serde_json::json!({"local": local.display().to_string(), "remote": remote, "mode": format!("{mode:o}"),
            "sha256": r.as_ref().ok().map(|t| t.sha256.clone()), "error": r.as_ref().err()}),
        r.is_ok(),
    );
    r
}

async fn upload_inner(
    pool: &Pool,
    host: &Host,
    local: &Path,
    remote: &str,
    mode: u32,
) -> Result<Transferred, String> {
    let data = std::fs::read(local).map_err(|e| format!("cannot read {}: {e}", local.display()))?;
    let sha = hex(&Sha256::digest(&data));
    let sftp = session(pool, host).await?;
    let tmp = format!("{remote}.claw-{}.tmp", ulid::Ulid::new());
    let write = async {
        let mut f = sftp
            .create(tmp.clone())
            .await
            .map_err(|e| format!("cannot create {tmp} on {}: {e}", host.alias))?;
        f.write_all(&data)
            .await
            .map_err(|e| format!("cannot write {tmp} on {}: {e}", host.alias))?;
        f.shutdown()
            .await
            .map_err(|e| format!("cannot close {tmp} on {}: {e}", host.alias))?;
        let attrs = FileAttributes {
            permissions: Some(mode),
            ..FileAttributes::empty()
        };
        sftp.set_metadata(tmp.clone(), attrs)
            .await
            .map_err(|e| format!("cannot set the mode of {tmp} on {}: {e}", host.alias))?;
        let theirs = remote_sha256(pool, host, &tmp).await?;
        if theirs != sha {
            return Err(format!(
                "checksum mismatch after upload to {}: local {sha}, remote {theirs}",
                host.alias
            ));
        }
        Ok(())
    };
    let result: Result<(), String> = write.await;
    if let Err(e) = result {
        let _ = sftp.remove_file(tmp.clone()).await;
        let _ = sftp.close().await;
        return Err(e);
    }
    // SFTP's rename refuses an existing target on OpenSSH: then rename(2) on the host (`mv -f`).
    if sftp.rename(tmp.clone(), remote.to_owned()).await.is_err() {
        let mv = Command {
            command: format!("mv -f -- {} {}", quote(&tmp), quote(remote)),
            env: Vec::new(),
            timeout: Duration::from_secs(60),
            sudo: false,
        };
        let out = pool
            .run(host, &mv, &CancellationToken::new(), &mut |_, _| {})
            .await;
        if !out.ok() {
            let _ = sftp.remove_file(tmp.clone()).await;
            let _ = sftp.close().await;
            return Err(format!(
                "cannot move the upload into place on {}: {}",
                host.alias,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    let _ = sftp.close().await;
    Ok(Transferred {
        bytes: data.len() as u64,
        sha256: sha,
    })
}

/// Downloads `remote` from `host` to `local`.
pub async fn download(
    pool: &Pool,
    host: &Host,
    remote: &str,
    local: &Path,
) -> Result<Transferred, String> {
    let r = download_inner(pool, host, remote, local).await;
    audit(
        pool,
        host,
        "download",
        serde_json::json!({"local": local.display().to_string(), "remote": remote,
            "sha256": r.as_ref().ok().map(|t| t.sha256.clone()), "error": r.as_ref().err()}),
        r.is_ok(),
    );
    r
}

async fn download_inner(
    pool: &Pool,
    host: &Host,
    remote: &str,
    local: &Path,
) -> Result<Transferred, String> {
    let sftp = session(pool, host).await?;
    let mut f = sftp
        .open(remote.to_owned())
        .await
        .map_err(|e| format!("cannot open {remote} on {}: {e}", host.alias))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data)
        .await
        .map_err(|e| format!("cannot read {remote} on {}: {e}", host.alias))?;
    let _ = sftp.close().await;
    let sha = hex(&Sha256::digest(&data));
    let theirs = remote_sha256(pool, host, remote).await?;
    if theirs != sha {
        return Err(format!(
            "checksum mismatch after download from {}: remote {theirs}, received {sha}",
            host.alias
        ));
    }
    crate::fsutil::AtomicWrite::new(local, ".claw-download-")
        .mode(0o644)
        .write_with(|w| std::io::Write::write_all(w, &data))
        .map_err(|e| format!("cannot write {}: {e}", local.display()))?;
    Ok(Transferred {
        bytes: data.len() as u64,
        sha256: sha,
    })
}
