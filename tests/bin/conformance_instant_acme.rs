//! A small ACME client on instant-acme, with its default retry policy, for
//! `kiln conformance` (tests/conformance.rs): one certificate for
//! `--domain` over http-01, served on 127.0.0.1:`--http01-port`.
//!
//! With `--broken` it behaves as the clients that broke when Let's Encrypt
//! made finalization asynchronous: it finalizes, then fetches the
//! certificate at once, without polling the order.
//!
//! `conformance-instant-acme --directory URL --root PEM --domain NAME
//!  --http01-port N --email ADDR --out FILE [--broken]`

use axum::extract::{Path, State};
use instant_acme::{
    Account, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

type Tokens = Arc<Mutex<HashMap<String, String>>>;

/// Serves `/.well-known/acme-challenge/{token}` on 127.0.0.1:`port`.
async fn serve_http01(port: u16) -> Result<Tokens, String> {
    let tokens = Tokens::default();
    let app = axum::Router::new()
        .route(
            "/.well-known/acme-challenge/{token}",
            axum::routing::get(
                |State(t): State<Tokens>, Path(token): Path<String>| async move {
                    t.lock().unwrap().get(&token).cloned().unwrap_or_default()
                },
            ),
        )
        .with_state(tokens.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("binding the http-01 port {port}: {e}"))?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(tokens)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` pairs, and the bare `--broken`.
fn flags() -> Result<(HashMap<String, String>, bool), String> {
    let (mut values, mut broken) = (HashMap::new(), false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.strip_prefix("--") {
            Some("broken") => broken = true,
            Some(name) => {
                let value = args.next().ok_or(format!("--{name} needs a value"))?;
                values.insert(name.to_string(), value);
            }
            None => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    Ok((values, broken))
}

async fn run() -> Result<(), String> {
    let (flags, broken) = flags()?;
    let flag = |name: &str| {
        flags
            .get(name)
            .cloned()
            .ok_or(format!("--{name} is required"))
    };
    let (directory, root, domain) = (flag("directory")?, flag("root")?, flag("domain")?);
    let port: u16 = flag("http01-port")?
        .parse()
        .map_err(|e| format!("--http01-port: {e}"))?;
    let email = format!("mailto:{}", flag("email")?);
    let out = flag("out")?;
    let http01 = serve_http01(port).await?;

    let (account, _) = Account::builder_with_root(&root)
        .map_err(|e| format!("reading {root}: {e}"))?
        .create(
            &NewAccount {
                contact: &[&email],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory,
            None,
        )
        .await
        .map_err(|e| format!("creating the account: {e}"))?;
    let ids = [Identifier::Dns(domain.clone())];
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(|e| format!("creating the order: {e}"))?;
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
        let mut challenge = authz
            .challenge(ChallengeType::Http01)
            .ok_or("no http-01 offered")?;
        let answer = challenge.key_authorization().as_str().to_string();
        http01
            .lock()
            .unwrap()
            .insert(challenge.token.clone(), answer);
        challenge
            .set_ready()
            .await
            .map_err(|e| format!("challenge: {e}"))?;
    }
    let status = order
        .poll_ready(&RetryPolicy::default())
        .await
        .map_err(|e| format!("{e}"))?;
    if status != OrderStatus::Ready {
        return Err(format!("order is {status:?}, not ready"));
    }
    let csr = kiln_tests::csr_der(&[&domain]);
    order
        .finalize_csr(&csr)
        .await
        .map_err(|e| format!("finalize: {e}"))?;
    let chain = if broken {
        // The bug: the finalize answer is taken as final.
        let state = order.state();
        match (&state.status, &state.certificate) {
            (OrderStatus::Valid, Some(_)) => {
                order.certificate().await.map_err(|e| e.to_string())?
            }
            (status, _) => {
                return Err(format!(
                    "finalize answered {status:?} without a certificate"
                ));
            }
        }
        .ok_or("no certificate")?
    } else {
        order
            .poll_certificate(&RetryPolicy::default())
            .await
            .map_err(|e| format!("waiting for the certificate: {e}"))?
    };
    std::fs::write(&out, chain).map_err(|e| format!("writing {out}: {e}"))?;
    println!("certificate for {domain} written to {out}");
    Ok(())
}
