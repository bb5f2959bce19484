//! `/mcp` on the daemon's listener: the same tools as `claw mcp`, over MCP's streamable HTTP
//! transport, behind a bearer token. Fail-closed: without `MCP_TOKEN` set, every request is
//! answered 503 naming the setting; without the right `Authorization: Bearer`, 401, and the
//! refusal is audited as `mcp.refused` with the client's address. The token is compared by its
//! SHA-256 in constant time and registered with the redactor.
//!
//! The transport (MCP 2025-03-26 "Streamable HTTP", JSON answers): a POST of `initialize`
//! opens a session (`Mcp-Session-Id` in the answer) served by rmcp over a channel pair; each
//! later POST names its session; a request is answered with its JSON-RPC response as
//! `application/json`, a notification or response with 202; DELETE ends the session; GET (a
//! stream for server-initiated messages, which claw's tools never send) is 405. rmcp's own
//! HTTP server is not used: its `rand 0.10` cannot be built beside russh's pinned `rand_core`
//! release candidate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use axum::routing::post;
use rmcp::ServiceExt as _;
use rmcp::model::{ClientJsonRpcMessage, JsonRpcMessage, RequestId, ServerJsonRpcMessage};
use rmcp::service::RoleServer;
use rmcp::transport::Transport;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Server;
use crate::config::Dirs;

/// The setting holding the bearer token of `/mcp`.
pub const TOKEN_SETTING: &str = "MCP_TOKEN";

/// What a request to `/mcp` answers without the token configured.
pub const NO_TOKEN: &str = "MCP over HTTP is off: set MCP_TOKEN (environment, .env, claw.yaml settings: or `claw vault set MCP_TOKEN`) and restart the daemon; clients send it as `Authorization: Bearer <token>`.";

/// The bearer token the settings give (`MCP_TOKEN`), if any; registered with the redactor.
pub fn token_from_settings(dirs: &Dirs) -> Option<String> {
    let (layers, _) =
        crate::vault::settings(&dirs.root, &dirs.home, std::collections::BTreeMap::new());
    let token = crate::config::resolve::DEFS
        .iter()
        .find(|d| d.name == TOKEN_SETTING)
        .and_then(|d| layers.get(*d).value)
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())?;
    crate::redact::register_global([token.as_str()]);
    Some(token)
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Sessions open at once; idle ones go first when a new one needs room.
const MAX_SESSIONS: usize = 64;
/// A session unused this long is closed.
const IDLE: Duration = Duration::from_secs(3600);
/// The largest message accepted.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// rmcp's side of a session: what the client posts comes in, what the server says goes out.
struct Channel {
    inbound: mpsc::Receiver<ClientJsonRpcMessage>,
    outbound: mpsc::Sender<ServerJsonRpcMessage>,
}

impl Transport<RoleServer> for Channel {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let out = self.outbound.clone();
        async move {
            out.send(item)
                .await
                .map_err(|_| std::io::Error::other("the MCP session is closed"))
        }
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        self.inbound.recv().await
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inbound.close();
        Ok(())
    }
}

/// One client's session.
struct Session {
    to_server: mpsc::Sender<ClientJsonRpcMessage>,
    /// Requests waiting for their response, by id (as JSON text).
    pending: Mutex<HashMap<String, oneshot::Sender<ServerJsonRpcMessage>>>,
    last_used: Mutex<Instant>,
    stop: CancellationToken,
}

impl Session {
    fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }

    fn idle(&self) -> Duration {
        self.last_used.lock().map_or(IDLE, |t| t.elapsed())
    }
}

/// What serves `/mcp`.
struct Mcp {
    server: Server,
    token_hash: Option<[u8; 32]>,
    audit: crate::audit::AuditLog,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Mcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mcp").finish_non_exhaustive()
    }
}

fn id_key(id: &RequestId) -> String {
    serde_json::to_string(id).unwrap_or_default()
}

impl Mcp {
    fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().ok()?.get(id).cloned()
    }

    fn end(&self, id: &str) -> bool {
        let gone = self.sessions.lock().ok().and_then(|mut m| m.remove(id));
        if let Some(s) = &gone {
            s.stop.cancel();
        }
        gone.is_some()
    }

    /// Opens a session: rmcp serves it over a channel pair until it ends or the daemon stops.
    fn open(&self) -> Result<(String, Arc<Session>), String> {
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| "the session table is unusable".to_owned())?;
        sessions.retain(|_, s| {
            let keep = s.idle() < IDLE && !s.stop.is_cancelled();
            if !keep {
                s.stop.cancel();
            }
            keep
        });
        if sessions.len() >= MAX_SESSIONS {
            // The longest idle one makes room.
            if let Some(oldest) = sessions
                .iter()
                .max_by_key(|(_, s)| s.idle())
                .map(|(k, _)| k.clone())
                && let Some(s) = sessions.remove(&oldest)
            {
                s.stop.cancel();
            }
        }
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|e| format!("no randomness: {e}"))?;
        let id = hex::encode(raw);
        let (to_server, inbound) = mpsc::channel(32);
        let (outbound, mut from_server) = mpsc::channel::<ServerJsonRpcMessage>(32);
        let stop = self.stop.child_token();
        let session = Arc::new(Session {
            to_server,
            pending: Mutex::new(HashMap::new()),
            last_used: Mutex::new(Instant::now()),
            stop: stop.clone(),
        });
        let server = self.server.clone();
        let ct = stop.clone();
        tokio::spawn(async move {
            let transport = Channel { inbound, outbound };
            if let Ok(running) = server.serve_with_ct(transport, ct.clone()).await {
                tokio::select! {
                    _ = running.waiting() => {}
                    () = ct.cancelled() => {}
                }
            }
            ct.cancel();
        });
        // Responses go to the request waiting for them; claw's tools send nothing else.
        let routed = session.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = from_server.recv() => m,
                    () = stop.cancelled() => None,
                };
                let Some(msg) = msg else { break };
                let id = match &msg {
                    JsonRpcMessage::Response(r) => Some(id_key(&r.id)),
                    JsonRpcMessage::Error(e) => e.id.as_ref().map(id_key),
                    _ => None,
                };
                let waiter = id.and_then(|id| routed.pending.lock().ok()?.remove(&id));
                if let Some(w) = waiter {
                    let _ = w.send(msg);
                }
            }
            // Whoever still waits learns the session ended.
            if let Ok(mut p) = routed.pending.lock() {
                p.clear();
            }
        });
        sessions.insert(id.clone(), session.clone());
        Ok((id, session))
    }
}

/// The `/mcp` route: `server`'s tools over streamable HTTP, behind `token` (none: refused).
/// `stop` ends the sessions when the daemon stops.
pub fn router(
    server: Server,
    token: Option<&str>,
    audit: crate::audit::AuditLog,
    stop: CancellationToken,
) -> axum::Router {
    let mcp = Arc::new(Mcp {
        server,
        token_hash: token.map(digest),
        audit,
        sessions: Mutex::new(HashMap::new()),
        stop,
    });
    axum::Router::new()
        .route("/mcp", post(on_post).get(on_get).delete(on_delete))
        // `route_layer`: the token check guards `/mcp` only; with `layer` it would also answer
        // every unknown path of the merged listener (503 or 401 instead of 404).
        .route_layer(axum::middleware::from_fn_with_state(mcp.clone(), check))
        .with_state(mcp)
}

const SESSION_HEADER: &str = "mcp-session-id";

fn rpc_error(status: StatusCode, code: i64, text: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({
            "jsonrpc": "2.0",
            "error": {"code": code, "message": text},
        })),
    )
        .into_response()
}

async fn on_post(State(mcp): State<Arc<Mcp>>, headers: HeaderMap, body: Bytes) -> Response {
    if body.len() > MAX_BODY {
        return rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            -32600,
            "the message is too large",
        );
    }
    let raw: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32700,
                &format!("the body is not JSON: {e}"),
            );
        }
    };
    if raw.is_array() {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            -32600,
            "batches are not accepted: send one message per request",
        );
    }
    let initialize = raw.get("method").and_then(serde_json::Value::as_str) == Some("initialize");
    let msg: ClientJsonRpcMessage = match serde_json::from_value(raw) {
        Ok(m) => m,
        Err(e) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32600,
                &format!("not an MCP message: {e}"),
            );
        }
    };
    let given = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (sid, session) = match (given, initialize) {
        (_, true) => match mcp.open() {
            Ok(s) => s,
            Err(e) => return rpc_error(StatusCode::SERVICE_UNAVAILABLE, -32603, &e),
        },
        (Some(id), false) => match mcp.session(&id) {
            Some(s) => (id, s),
            None => {
                return rpc_error(
                    StatusCode::NOT_FOUND,
                    -32001,
                    "no such session (it ended): initialize again",
                );
            }
        },
        (None, false) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32600,
                "no Mcp-Session-Id: initialize first",
            );
        }
    };
    session.touch();
    let waiter = match &msg {
        JsonRpcMessage::Request(r) => {
            let (tx, rx) = oneshot::channel();
            if let Ok(mut p) = session.pending.lock() {
                p.insert(id_key(&r.id), tx);
            }
            Some(rx)
        }
        _ => None,
    };
    if session.to_server.send(msg).await.is_err() {
        mcp.end(&sid);
        return rpc_error(StatusCode::NOT_FOUND, -32001, "the session has ended");
    }
    let mut res = match waiter {
        None => StatusCode::ACCEPTED.into_response(),
        Some(rx) => match rx.await {
            Ok(answer) => axum::Json(answer).into_response(),
            Err(_) => {
                mcp.end(&sid);
                return rpc_error(StatusCode::NOT_FOUND, -32001, "the session has ended");
            }
        },
    };
    if let Ok(v) = HeaderValue::from_str(&sid) {
        res.headers_mut().insert(SESSION_HEADER, v);
    }
    res
}

/// No stream of server-initiated messages: claw's tools answer requests only.
async fn on_get() -> Response {
    let mut res = rpc_error(
        StatusCode::METHOD_NOT_ALLOWED,
        -32600,
        "no server-initiated stream here; POST requests",
    );
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
    res
}

async fn on_delete(State(mcp): State<Arc<Mcp>>, headers: HeaderMap) -> Response {
    let id = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if mcp.end(id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        rpc_error(StatusCode::NOT_FOUND, -32001, "no such session")
    }
}

fn refuse(status: StatusCode, text: &str) -> Response {
    let mut res = (status, axum::Json(serde_json::json!({"error": text}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    res
}

async fn check(State(gate): State<Arc<Mcp>>, req: Request, next: Next) -> Response {
    let Some(expected) = gate.token_hash else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, NO_TOKEN);
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = given.is_some_and(|t| bool::from(digest(t).ct_eq(&expected)));
    if ok {
        return next.run(req).await;
    }
    let client = req
        .extensions()
        .get::<crate::web::Peer>()
        .map(|p| p.0.ip().to_string())
        .unwrap_or_default();
    let why = if given.is_some() {
        "wrong bearer token"
    } else {
        "no bearer token"
    };
    let event = crate::audit::Event::new(
        "mcp:http",
        crate::audit::Action::McpRefused,
        "/mcp",
        "refused",
        serde_json::json!({"why": why, "client": client}),
    );
    if let Err(e) = gate.audit.record(&event) {
        tracing::warn!("mcp: cannot write the audit log: {e}");
    }
    refuse(
        StatusCode::UNAUTHORIZED,
        "send `Authorization: Bearer <MCP_TOKEN>`",
    )
}
