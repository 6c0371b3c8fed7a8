//! The admin HTTP listener (`--admin-addr`, off unless given): what Prometheus and an
//! orchestrator such as Kubernetes ask a node, on a port of its own.
//!
//! | route          | answer |
//! | -------------- | ------ |
//! | `GET /metrics` | 200, the node's counters in the Prometheus text format 0.0.4 ([`metrics`]) |
//! | `GET /healthz` | 200 `ok` while the process answers; 503 and why not ([`health::liveness`]) |
//! | `GET /readyz`  | 200 `ready` when it is safe to restart the next node; 503 and why not ([`health::readiness`]) |
//!
//! Anything else is 404 (405 for another method on a known path). Bodies are plain
//! text. It runs on hyper's HTTP/1 server as one task of the node beside the
//! memcached listener, and stops when the node does. It is unauthenticated and reads
//! only; bind it where only the scraper and the orchestrator reach it.

pub mod health;
pub mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::node::Node;

/// Admin connections served at once; more wait in the listen backlog. Scrapers and
/// probes open one or two each.
const MAX_CONNECTIONS: usize = 64;

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one connection may stay open (a scraper that keeps its connection alive
/// opens a new one after this).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

const TEXT: &str = "text/plain; charset=utf-8";

/// Binds the admin listener.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("--admin-addr {addr}: cannot listen"))
}

/// Serves the admin routes on `listener` until `shutdown` turns true; open admin
/// connections are then closed.
pub async fn serve(node: Arc<Node>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    info!(addr = ?listener.local_addr().ok(), "admin listening");
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        if conns.len() >= MAX_CONNECTIONS {
            tokio::select! {
                _ = conns.join_next() => continue,
                _ = shutdown.changed() => break,
            }
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (sock, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let node = node.clone();
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let node = node.clone();
                async move { Ok::<_, Infallible>(route(&node, &req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(sock), service);
            // A connection past its lifetime is dropped (closed) here.
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                debug!(%peer, error = %e, "admin connection failed");
            }
        });
    }
    // Dropping the set aborts the connections still open.
    drop(conns);
}

/// The answer to one request.
pub async fn route(node: &Node, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        );
    }
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match path {
        "/metrics" => {
            let page = metrics::render_node(node);
            let mut resp = Response::new(Full::new(Bytes::from(page)));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE));
            resp
        }
        "/healthz" => match health::liveness(node) {
            Ok(()) => text(StatusCode::OK, "ok\n".into()),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        },
        _ => match health::readiness(node).await {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        },
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(TEXT));
    resp
}
