//! A small ACME client on instant-acme, with its default retry policy, for
//! `kiln conformance` (tests/conformance.rs): one certificate for
//! `--domain` over http-01, served on 127.0.0.1:`--http01-port`.
//!
//! With `--broken` it behaves as the clients that broke when Let's Encrypt
//! made finalization asynchronous: it finalizes, then fetches the
//! certificate at once, without polling the order.
//!
//! With `--ari` it keeps its account beside `--out` and, when `--out`
//! already holds a certificate, renews as RFC 9773 asks: it fetches the
//! certificate's renewalInfo and renews, naming it in `replaces`, only once
//! the suggested window has started.
//!
//! `conformance-instant-acme --directory URL --root PEM --domain NAME
//!  --http01-port N --email ADDR --out FILE [--broken] [--ari]`

use axum::extract::{Path, State};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use instant_acme::{
    Account, AccountCredentials, CertificateIdentifier, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use x509_parser::extensions::ParsedExtension;

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

/// `--name value` pairs, and the bare `--broken` and `--ari`.
fn flags() -> Result<(HashMap<String, String>, bool, bool), String> {
    let (mut values, mut broken, mut ari) = (HashMap::new(), false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.strip_prefix("--") {
            Some("broken") => broken = true,
            Some("ari") => ari = true,
            Some(name) => {
                let value = args.next().ok_or(format!("--{name} needs a value"))?;
                values.insert(name.to_string(), value);
            }
            None => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    Ok((values, broken, ari))
}

/// RFC 9773 §4.1's certID of the first certificate in `pem`.
fn cert_id(pem: &str) -> Result<CertificateIdentifier<'static>, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
    let cert = pem.parse_x509().map_err(|e| e.to_string())?;
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref(),
            _ => None,
        })
        .ok_or("the certificate has no AKI keyIdentifier")?;
    Ok(CertificateIdentifier {
        authority_key_identifier: URL_SAFE_NO_PAD.encode(aki.0).into(),
        serial: URL_SAFE_NO_PAD.encode(cert.raw_serial()).into(),
    })
}

/// Where `--ari` starts from.
enum Renewal {
    /// No certificate yet: a new account and order.
    None,
    /// The certificate's window has not started: nothing to do.
    NotDue,
    /// Renew it, on the account it was issued to.
    Due(Account, CertificateIdentifier<'static>),
}

/// With a certificate (and its account) at `out`: asks its renewalInfo.
async fn renewal(root: &str, out: &str) -> Result<Renewal, String> {
    let (Ok(credentials), Ok(pem)) = (
        std::fs::read_to_string(format!("{out}.account.json")),
        std::fs::read_to_string(out),
    ) else {
        return Ok(Renewal::None);
    };
    let credentials: AccountCredentials =
        serde_json::from_str(&credentials).map_err(|e| format!("the saved account: {e}"))?;
    let account = Account::builder_with_root(root)
        .map_err(|e| format!("reading {root}: {e}"))?
        .from_credentials(credentials)
        .await
        .map_err(|e| format!("restoring the account: {e}"))?;
    let id = cert_id(&pem)?;
    let (info, _) = account
        .renewal_info(&id)
        .await
        .map_err(|e| format!("renewalInfo: {e}"))?;
    let start = info.suggested_window.start;
    if start > time::OffsetDateTime::now_utc() {
        println!("not due for renewal: the window starts at {start}");
        return Ok(Renewal::NotDue);
    }
    println!("the renewal window started at {start}: renewing");
    Ok(Renewal::Due(account, id))
}

async fn run() -> Result<(), String> {
    let (flags, broken, ari) = flags()?;
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

    let renewing = match ari {
        true => renewal(&root, &out).await?,
        false => Renewal::None,
    };
    let (account, replaces) = match renewing {
        Renewal::NotDue => return Ok(()),
        Renewal::Due(account, id) => (account, Some(id)),
        Renewal::None => {
            let (account, credentials) = Account::builder_with_root(&root)
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
            if ari {
                let saved = serde_json::to_string(&credentials).map_err(|e| e.to_string())?;
                std::fs::write(format!("{out}.account.json"), saved)
                    .map_err(|e| format!("saving the account: {e}"))?;
            }
            (account, None)
        }
    };
    let ids = [Identifier::Dns(domain.clone())];
    let mut new_order = NewOrder::new(&ids);
    if let Some(id) = replaces {
        new_order = new_order.replaces(id);
    }
    let mut order = account
        .new_order(&new_order)
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
