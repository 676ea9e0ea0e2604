//! A raw ACME client for black-box tests: every request is built by hand
//! with [`api::jws::sign_flattened`], so a test can forge any header,
//! payload or signature and look at exactly what Kiln answers.

use crate::{TestKiln, csr_der_with_key};
use api::jws::{jwk_of, sign_flattened};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::X509;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Every ACME problem `type` starts with this.
pub const ERROR_PREFIX: &str = "urn:ietf:params:acme:error:";
/// The only content type ACME POSTs may carry (RFC 8555 §6.2).
pub const JOSE_JSON: &str = "application/jose+json";

/// Account (or certificate) key types the tests generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    P256,
    P384,
    Rsa(u32),
    Ed25519,
}

pub fn generate_key(kind: KeyKind) -> PKey<Private> {
    let ec = |nid| {
        let group = EcGroup::from_curve_name(nid).expect("curve");
        PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("pkey")
    };
    match kind {
        KeyKind::P256 => ec(Nid::X9_62_PRIME256V1),
        KeyKind::P384 => ec(Nid::SECP384R1),
        KeyKind::Rsa(bits) => PKey::from_rsa(Rsa::generate(bits).expect("RSA key")).expect("pkey"),
        KeyKind::Ed25519 => PKey::generate_ed25519().expect("Ed25519 key"),
    }
}

/// A fresh P-256 key, the default account and certificate key.
pub fn p256() -> PKey<Private> {
    generate_key(KeyKind::P256)
}

/// A P-256 key whose public point OpenSSL encodes compressed, so its SPKI
/// bytes differ from those of the same key in a JWK (always x and y).
pub fn compressed_p256() -> PKey<Private> {
    use openssl::bn::BigNumContext;
    use openssl::ec::{EcGroup, EcKey, PointConversionForm};
    use openssl::nid::Nid;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = EcKey::generate(&group).unwrap();
    let mut ctx = BigNumContext::new().unwrap();
    let point = key
        .public_key()
        .to_bytes(&group, PointConversionForm::COMPRESSED, &mut ctx)
        .unwrap();
    assert_eq!(point.len(), 33);
    // SEC 1 ECPrivateKey; OpenSSL keeps the public key's encoding form.
    let private = key.private_key().to_vec_padded(32).unwrap();
    let oid = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let mut inner = vec![0x02, 0x01, 0x01, 0x04, 0x20];
    inner.extend_from_slice(&private);
    inner.extend_from_slice(&[0xa0, oid.len() as u8]);
    inner.extend_from_slice(&oid);
    inner.extend_from_slice(&[0xa1, 0x24, 0x03, 0x22, 0x00]);
    inner.extend_from_slice(&point);
    let mut der = vec![0x30, inner.len() as u8];
    der.extend_from_slice(&inner);
    let pkey = PKey::from_ec_key(EcKey::private_key_from_der(&der).unwrap()).unwrap();
    // 59 bytes is the compressed P-256 SPKI (91 uncompressed).
    assert_eq!(pkey.public_key_to_der().unwrap().len(), 59);
    pkey
}

/// The JWS `alg` that fits `key`.
pub fn alg_for(key: &PKey<Private>) -> &'static str {
    match key.id() {
        Id::RSA => "RS256",
        Id::ED25519 => "EdDSA",
        Id::EC if key.bits() == 384 => "ES384",
        _ => "ES256",
    }
}

/// RFC 7638 thumbprint of `key`'s public JWK.
pub fn thumbprint(key: &PKey<Private>) -> String {
    api::jwk::Jwk::from_value(&jwk_of(key))
        .expect("JWK of a supported key")
        .thumbprint()
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The JWS payload for `payload`; `None` is POST-as-GET (empty payload).
pub fn payload_bytes(payload: Option<&Value>) -> Vec<u8> {
    payload
        .map(|v| v.to_string().into_bytes())
        .unwrap_or_default()
}

/// What Kiln answered: status, headers and the body (as JSON when it is).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body parsed as JSON; `Value::Null` if it is not JSON.
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn nonce(&self) -> Option<String> {
        self.header("replay-nonce").map(str::to_string)
    }

    pub fn location(&self) -> String {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location header: {self:?}"))
            .to_string()
    }

    /// Asserts the status; shows the whole reply if it differs.
    pub fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts an RFC 7807 problem of `kind` (e.g. `"badNonce"`) with HTTP
    /// `status`, served as application/problem+json with a Replay-Nonce
    /// (RFC 8555 §6.5: every error carries one so the client can retry).
    /// Returns the problem's detail.
    pub fn expect_problem(&self, status: u16, kind: &str) -> String {
        assert_eq!(
            self.status, status,
            "expected a {status} {kind} problem, got: {}",
            self.text
        );
        assert_eq!(
            self.body["type"].as_str(),
            Some(format!("{ERROR_PREFIX}{kind}").as_str()),
            "problem type; body: {}",
            self.text
        );
        let content_type = self.header("content-type").unwrap_or("");
        assert_eq!(
            content_type.split(';').next().map(str::trim),
            Some("application/problem+json"),
            "problem content-type; body: {}",
            self.text
        );
        assert!(
            self.nonce().is_some_and(|n| !n.is_empty()),
            "a problem response must carry a Replay-Nonce: {self:?}"
        );
        assert_eq!(
            self.body["status"].as_u64(),
            Some(u64::from(status)),
            "problem status member; body: {}",
            self.text
        );
        let detail = self.body["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("problem without a detail: {}", self.text));
        assert!(!detail.is_empty(), "empty problem detail");
        detail.to_string()
    }
}

/// An account: its key and URL (the `kid`).
pub struct Account {
    pub key: PKey<Private>,
    pub url: String,
}

/// An order's URL and the body it was last read with.
#[derive(Clone, Debug)]
pub struct Order {
    pub url: String,
    pub body: Value,
}

impl Order {
    pub fn finalize_url(&self) -> String {
        self.body["finalize"]
            .as_str()
            .expect("order has a finalize URL")
            .to_string()
    }

    pub fn authorizations(&self) -> Vec<String> {
        self.body["authorizations"]
            .as_array()
            .expect("order has authorizations")
            .iter()
            .map(|u| u.as_str().expect("authorization URL").to_string())
            .collect()
    }

    pub fn status(&self) -> &str {
        self.body["status"].as_str().unwrap_or("")
    }
}

/// A certificate issued through the whole flow.
pub struct Issued {
    pub order: Order,
    pub cert_url: String,
    /// The leaf, DER.
    pub cert_der: Vec<u8>,
    /// The key the leaf certifies.
    pub cert_key: PKey<Private>,
}

/// A raw ACME client bound to one Kiln.
pub struct Acme {
    pub http: reqwest::Client,
    pub directory: Value,
    pub base_url: String,
}

impl Acme {
    pub async fn connect(kiln: &TestKiln) -> Acme {
        let http = kiln.https_client();
        let reply = http
            .get(kiln.directory_url())
            .send()
            .await
            .expect("GET directory");
        assert!(reply.status().is_success(), "directory: {}", reply.status());
        let directory: Value = reply.json().await.expect("directory JSON");
        Acme {
            http,
            directory,
            base_url: kiln.kiln.base_url.trim_end_matches('/').to_string(),
        }
    }

    /// A directory entry, e.g. `"newOrder"`.
    pub fn resource(&self, name: &str) -> String {
        self.directory[name]
            .as_str()
            .unwrap_or_else(|| panic!("directory has no {name}: {}", self.directory))
            .to_string()
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A fresh nonce from HEAD newNonce.
    pub async fn nonce(&self) -> String {
        let reply = self
            .http
            .head(self.resource("newNonce"))
            .send()
            .await
            .expect("HEAD newNonce");
        assert!(reply.status().is_success(), "newNonce: {}", reply.status());
        reply
            .headers()
            .get("replay-nonce")
            .and_then(|v| v.to_str().ok())
            .expect("newNonce answers with a Replay-Nonce")
            .to_string()
    }

    /// Sends anything; `content_type` None sends no Content-Type at all.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        body: impl Into<Vec<u8>>,
    ) -> Reply {
        let mut request = self.http.request(method, url).body(body.into());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, url: &str) -> Reply {
        self.send(Method::GET, url, None, Vec::new()).await
    }

    /// POSTs `body` (a JWS, or anything) as application/jose+json.
    pub async fn post_body(&self, url: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.send(Method::POST, url, Some(JOSE_JSON), body).await
    }

    /// A protected header naming `key` as `jwk`, with a fresh nonce.
    pub async fn jwk_header(&self, key: &PKey<Private>, url: &str) -> Value {
        json!({"nonce": self.nonce().await, "url": url, "jwk": jwk_of(key)})
    }

    /// A protected header naming the account `kid`, with a fresh nonce.
    pub async fn kid_header(&self, kid: &str, url: &str) -> Value {
        json!({"nonce": self.nonce().await, "url": url, "kid": kid})
    }

    /// Signs with `key`'s own algorithm and POSTs to `url`.
    pub async fn post_signed(
        &self,
        key: &PKey<Private>,
        url: &str,
        header: Value,
        payload: &[u8],
    ) -> Reply {
        let body = sign_flattened(key, alg_for(key), header, payload);
        self.post_body(url, body).await
    }

    /// A `jwk`-signed request (newAccount, revocation by certificate key).
    pub async fn post_jwk(&self, key: &PKey<Private>, url: &str, payload: Option<&Value>) -> Reply {
        let header = self.jwk_header(key, url).await;
        self.post_signed(key, url, header, &payload_bytes(payload))
            .await
    }

    /// A `kid`-signed request by `account`; `None` is POST-as-GET.
    pub async fn post_kid(&self, account: &Account, url: &str, payload: Option<&Value>) -> Reply {
        let header = self.kid_header(&account.url, url).await;
        self.post_signed(&account.key, url, header, &payload_bytes(payload))
            .await
    }

    pub async fn post_as_get(&self, account: &Account, url: &str) -> Reply {
        self.post_kid(account, url, None).await
    }

    // ---- flows ---------------------------------------------------------------

    pub async fn new_account_reply(&self, key: &PKey<Private>, payload: &Value) -> Reply {
        self.post_jwk(key, &self.resource("newAccount"), Some(payload))
            .await
    }

    /// newAccount for `key`, agreeing to the terms; the reply as it came.
    pub async fn new_account_agreeing(&self, key: &PKey<Private>) -> Reply {
        self.new_account_reply(key, &json!({"termsOfServiceAgreed": true}))
            .await
    }

    /// keyChange of `account` to `new_key` (RFC 8555 §7.3.5): the inner JWS
    /// is signed by the new key.
    pub async fn key_change(&self, account: &Account, new_key: &PKey<Private>) -> Reply {
        let url = self.resource("keyChange");
        let inner = sign_flattened(
            new_key,
            alg_for(new_key),
            json!({"url": url, "jwk": jwk_of(new_key)}),
            json!({"account": account.url, "oldKey": jwk_of(&account.key)})
                .to_string()
                .as_bytes(),
        );
        let inner: Value = serde_json::from_str(&inner).expect("JWS JSON");
        self.post_kid(account, &url, Some(&inner)).await
    }

    /// Creates an account for `key`; asserts 201 Created.
    pub async fn create_account_with(&self, key: PKey<Private>) -> Account {
        let reply = self
            .new_account_reply(&key, &json!({"termsOfServiceAgreed": true}))
            .await;
        reply.expect_status(201);
        assert_eq!(reply.body["status"], "valid", "{}", reply.text);
        Account {
            key,
            url: reply.location(),
        }
    }

    /// Creates an account with a fresh P-256 key.
    pub async fn create_account(&self) -> Account {
        self.create_account_with(p256()).await
    }

    pub async fn new_order_reply(&self, account: &Account, payload: &Value) -> Reply {
        self.post_kid(account, &self.resource("newOrder"), Some(payload))
            .await
    }

    /// Orders `names` (dns); asserts 201 and a pending order.
    pub async fn new_order(&self, account: &Account, names: &[&str]) -> Order {
        let identifiers: Vec<Value> = names
            .iter()
            .map(|n| json!({"type": "dns", "value": n}))
            .collect();
        let reply = self
            .new_order_reply(account, &json!({"identifiers": identifiers}))
            .await;
        reply.expect_status(201);
        // `ready` when every name reuses a valid authorization of the account.
        assert!(
            reply.body["status"] == "pending" || reply.body["status"] == "ready",
            "{}",
            reply.text
        );
        Order {
            url: reply.location(),
            body: reply.body,
        }
    }

    /// Reads an order with POST-as-GET; asserts 200.
    pub async fn read_order(&self, account: &Account, url: &str) -> Order {
        let reply = self.post_as_get(account, url).await;
        reply.expect_status(200);
        Order {
            url: url.to_string(),
            body: reply.body,
        }
    }

    /// The http-01 challenge of one authorization: (challenge URL, token).
    pub async fn http01_challenge(&self, account: &Account, authz_url: &str) -> (String, String) {
        let authz = self.post_as_get(account, authz_url).await;
        authz.expect_status(200);
        let challenge = authz.body["challenges"]
            .as_array()
            .expect("challenges")
            .iter()
            .find(|c| c["type"] == "http-01")
            .unwrap_or_else(|| panic!("no http-01 challenge: {}", authz.text))
            .clone();
        (
            challenge["url"]
                .as_str()
                .expect("challenge url")
                .to_string(),
            challenge["token"]
                .as_str()
                .expect("challenge token")
                .to_string(),
        )
    }

    /// Publishes every authorization's http-01 key authorization and tells
    /// Kiln to validate it; does not wait.
    pub async fn start_http01(&self, kiln: &TestKiln, account: &Account, order: &Order) {
        let thumbprint = thumbprint(&account.key);
        for authz_url in order.authorizations() {
            let (challenge_url, token) = self.http01_challenge(account, &authz_url).await;
            kiln.http01.set(&token, &format!("{token}.{thumbprint}"));
            let reply = self
                .post_kid(account, &challenge_url, Some(&json!({})))
                .await;
            reply.expect_status(200);
        }
    }

    /// Polls the order until its status is `want`; panics if it becomes
    /// `invalid` instead, or after 60 s.
    pub async fn poll_order(&self, account: &Account, url: &str, want: &str) -> Order {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let order = self.read_order(account, url).await;
            if order.status() == want {
                return order;
            }
            assert_ne!(
                order.status(),
                "invalid",
                "order became invalid while waiting for {want}: {}",
                order.body
            );
            assert!(
                Instant::now() < deadline,
                "order still {} after 60 s, wanted {want}: {}",
                order.status(),
                order.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// An order for `names` whose authorizations are all valid.
    pub async fn ready_order(&self, kiln: &TestKiln, account: &Account, names: &[&str]) -> Order {
        let order = self.new_order(account, names).await;
        self.start_http01(kiln, account, &order).await;
        self.poll_order(account, &order.url, "ready").await
    }

    /// POSTs `{"csr": base64url(csr_der)}` to the order's finalize URL.
    pub async fn finalize(&self, account: &Account, order: &Order, csr_der: &[u8]) -> Reply {
        self.finalize_b64(account, order, &b64(csr_der)).await
    }

    pub async fn finalize_b64(&self, account: &Account, order: &Order, csr: &str) -> Reply {
        self.post_kid(account, &order.finalize_url(), Some(&json!({"csr": csr})))
            .await
    }

    /// Orders, validates, finalizes and downloads a certificate for `names`.
    pub async fn issue(&self, kiln: &TestKiln, account: &Account, names: &[&str]) -> Issued {
        self.issue_with_key(kiln, account, names, p256()).await
    }

    /// [`Acme::issue`] for a CSR of `cert_key`.
    pub async fn issue_with_key(
        &self,
        kiln: &TestKiln,
        account: &Account,
        names: &[&str],
        cert_key: PKey<Private>,
    ) -> Issued {
        let order = self.ready_order(kiln, account, names).await;
        self.finalize(account, &order, &csr_der_with_key(names, &cert_key))
            .await
            .expect_status(200);
        let order = self.poll_order(account, &order.url, "valid").await;
        let cert_url = order.body["certificate"]
            .as_str()
            .expect("a valid order has a certificate URL")
            .to_string();
        let download = self.post_as_get(account, &cert_url).await;
        download.expect_status(200);
        let leaf = X509::stack_from_pem(download.text.as_bytes()).expect("PEM chain")[0].clone();
        Issued {
            order,
            cert_url,
            cert_der: leaf.to_der().expect("DER"),
            cert_key,
        }
    }

    /// revokeCert signed by an account (`kid`).
    pub async fn revoke_by_account(
        &self,
        account: &Account,
        cert_der: &[u8],
        reason: Option<i64>,
    ) -> Reply {
        let payload = revoke_payload(cert_der, reason);
        self.post_kid(account, &self.resource("revokeCert"), Some(&payload))
            .await
    }

    /// revokeCert signed by `key` as a `jwk` (the certificate's key).
    pub async fn revoke_by_key(
        &self,
        key: &PKey<Private>,
        cert_der: &[u8],
        reason: Option<i64>,
    ) -> Reply {
        let payload = revoke_payload(cert_der, reason);
        self.post_jwk(key, &self.resource("revokeCert"), Some(&payload))
            .await
    }
}

fn revoke_payload(cert_der: &[u8], reason: Option<i64>) -> Value {
    let mut payload = json!({"certificate": b64(cert_der)});
    if let Some(reason) = reason {
        payload["reason"] = json!(reason);
    }
    payload
}
