//! Publishing challenge responses: an http-01 responder of the tool's own,
//! or TXT records through pebble-challtestsrv's management API for dns-01.

use anyhow::Context;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Publishes challenge responses.
#[derive(Clone)]
pub enum Responder {
    Http(Arc<Mutex<HashMap<String, String>>>),
    Dns {
        client: reqwest::Client,
        base: String,
    },
}

impl Responder {
    /// Starts the http-01 responder on `listen` (the address the CA
    /// validates on).
    pub async fn http01(listen: SocketAddr) -> anyhow::Result<Responder> {
        Ok(Responder::Http(start_http01(listen).await?))
    }

    /// Records go through challtestsrv's API at `base`.
    pub fn dns01(base: &str) -> Responder {
        Responder::Dns {
            client: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
        }
    }

    pub async fn publish(
        &self,
        name: &str,
        token: &str,
        key_auth: &instant_acme::KeyAuthorization,
    ) {
        match self {
            Responder::Http(map) => {
                map.lock()
                    .expect("lock")
                    .insert(token.to_string(), key_auth.as_str().to_string());
            }
            Responder::Dns { client, base } => {
                let host = format!("_acme-challenge.{}.", name.trim_start_matches("*."));
                let _ = client
                    .post(format!("{base}/set-txt"))
                    .json(&serde_json::json!({"host": host, "value": key_auth.dns_value()}))
                    .send()
                    .await;
            }
        }
    }

    pub async fn withdraw(&self, name: &str, token: &str) {
        match self {
            Responder::Http(map) => {
                map.lock().expect("lock").remove(token);
            }
            Responder::Dns { client, base } => {
                let host = format!("_acme-challenge.{}.", name.trim_start_matches("*."));
                let _ = client
                    .post(format!("{base}/clear-txt"))
                    .json(&serde_json::json!({ "host": host }))
                    .send()
                    .await;
            }
        }
    }
}

async fn start_http01(listen: SocketAddr) -> anyhow::Result<Arc<Mutex<HashMap<String, String>>>> {
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    let tokens: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    async fn answer(
        State(tokens): State<Arc<Mutex<HashMap<String, String>>>>,
        Path(token): Path<String>,
    ) -> Result<String, StatusCode> {
        tokens
            .lock()
            .expect("lock")
            .get(&token)
            .cloned()
            .ok_or(StatusCode::NOT_FOUND)
    }
    let app = axum::Router::new()
        .route(
            "/.well-known/acme-challenge/{token}",
            axum::routing::get(answer),
        )
        .with_state(tokens.clone());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the http-01 responder on {listen}"))?;
    // No Nagle, as a real web server answers (both CAs validate against it).
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(tokens)
}
