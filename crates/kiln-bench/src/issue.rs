//! One complete issuance and what it measured: new order, challenges
//! answered, validation polled to `ready`, finalize (timed on its own),
//! polled to `valid`, certificate downloaded. A failure is named by the
//! step it happened at and the kind of error.

use crate::responder::Responder;
use crate::transport::Transport;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, Order, OrderStatus,
};
use std::time::{Duration, Instant};

/// Trimmed from ACME problem types: errors are counted by the short name.
const ACME_ERROR_PREFIX: &str = "urn:ietf:params:acme:error:";

/// One order's plan, made before the clock starts.
pub struct Plan {
    pub names: Vec<String>,
    pub csr_der: Vec<u8>,
}

impl Plan {
    /// A plan for `names` with a CSR of a fresh P-256 key.
    pub fn new(names: Vec<String>) -> anyhow::Result<Plan> {
        let csr_der = make_csr(&names)?;
        Ok(Plan { names, csr_der })
    }
}

fn make_csr(names: &[String]) -> anyhow::Result<Vec<u8>> {
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::stack::Stack;
    use openssl::x509::X509ReqBuilder;
    use openssl::x509::extension::SubjectAlternativeName;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut builder = X509ReqBuilder::new()?;
    builder.set_pubkey(&key)?;
    let mut san = SubjectAlternativeName::new();
    for name in names {
        san.dns(name);
    }
    let context = builder.x509v3_context(None);
    let mut extensions = Stack::new()?;
    extensions.push(san.build(&context)?)?;
    builder.add_extensions(&extensions)?;
    builder.sign(&key, MessageDigest::sha256())?;
    Ok(builder.build().to_der()?)
}

/// What one finished issuance measured.
pub struct Sample {
    pub finalize_post: Duration,
    pub finalize_to_valid: Duration,
    pub validation: Duration,
    pub issuance: Duration,
    pub finalize_status: &'static str,
    pub polls: u32,
}

/// Where an issuance failed, and how.
pub struct Failure {
    stage: &'static str,
    error: String,
    /// Set when the order got as far as an answered finalize POST.
    pub finalize_post: Option<Duration>,
}

impl Failure {
    fn at(stage: &'static str) -> impl FnOnce(instant_acme::Error) -> Failure {
        move |e| Failure {
            stage,
            error: classify(&e),
            finalize_post: None,
        }
    }
    pub fn new(stage: &'static str, error: &str) -> Failure {
        Failure {
            stage,
            error: error.to_string(),
            finalize_post: None,
        }
    }
    /// `stage: error`, the key the report counts errors by.
    pub fn kind(&self) -> String {
        format!("{}: {}", self.stage, self.error)
    }
}

fn classify(e: &instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => {
            let t = p.r#type.as_deref().unwrap_or("problem");
            t.trim_start_matches(ACME_ERROR_PREFIX).to_string()
        }
        instant_acme::Error::Timeout(_) => "timeout".into(),
        instant_acme::Error::Json(_) => "json".into(),
        instant_acme::Error::Other(inner) => {
            if inner.downcast_ref::<reqwest::Error>().is_some() {
                "transport".into()
            } else {
                "other".into()
            }
        }
        other => format!("{other}").chars().take(60).collect(),
    }
}

/// How the driver waits between polls.
#[derive(Clone, Copy)]
pub enum PollPolicy {
    Fixed(Duration),
    RetryAfter { fallback: Duration },
}

impl PollPolicy {
    fn delay(&self, transport: &Transport, url: &str) -> Duration {
        match *self {
            PollPolicy::Fixed(d) => d,
            PollPolicy::RetryAfter { fallback } => {
                transport.take_retry_after(url).unwrap_or(fallback)
            }
        }
    }
    pub fn describe(&self) -> String {
        match self {
            PollPolicy::Fixed(d) => format!("fixed {} ms", d.as_millis()),
            PollPolicy::RetryAfter { fallback } => {
                format!("Retry-After (else {} ms)", fallback.as_millis())
            }
        }
    }
}

/// What every issuance of a run shares.
pub struct Ctx {
    pub transport: Transport,
    pub responder: Responder,
    pub challenge: ChallengeType,
    pub poll: PollPolicy,
    pub order_timeout: Duration,
}

/// One complete issuance.
pub async fn issue(ctx: &Ctx, account: &Account, plan: &Plan) -> Result<Sample, Failure> {
    let start = Instant::now();
    let deadline = start + ctx.order_timeout;
    let ids: Vec<Identifier> = plan
        .names
        .iter()
        .map(|n| Identifier::Dns(n.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(Failure::at("new-order"))?;
    let mut polls = 0u32;

    // Answer each pending authorization's challenge.
    let validation_start = Instant::now();
    let mut published = Vec::new();
    let mut first_wait = None;
    {
        let mut authzs = order.authorizations();
        while let Some(authz) = authzs.next().await {
            let mut authz = authz.map_err(Failure::at("authz"))?;
            if authz.status == AuthorizationStatus::Valid {
                continue;
            }
            let name = authz.identifier().to_string();
            let mut challenge = authz
                .challenge(ctx.challenge.clone())
                .ok_or(Failure::new("authz", "challenge type not offered"))?;
            let key_auth = challenge.key_authorization();
            ctx.responder
                .publish(&name, &challenge.token, &key_auth)
                .await;
            published.push((name, challenge.token.clone()));
            challenge
                .set_ready()
                .await
                .map_err(Failure::at("challenge"))?;
            first_wait = Some(ctx.poll.delay(&ctx.transport, &challenge.url));
        }
    }
    let order_url = order.url().to_string();
    if order.state().status == OrderStatus::Pending {
        let mut wait = first_wait.unwrap_or(Duration::ZERO);
        loop {
            if Instant::now() + wait > deadline {
                withdraw(ctx, &published).await;
                return Err(Failure::new("validation", "timeout"));
            }
            tokio::time::sleep(wait).await;
            polls += 1;
            let state = order
                .refresh()
                .await
                .map_err(Failure::at("validation-poll"));
            let state = match state {
                Ok(s) => s,
                Err(f) => {
                    withdraw(ctx, &published).await;
                    return Err(f);
                }
            };
            match state.status {
                OrderStatus::Ready | OrderStatus::Processing | OrderStatus::Valid => break,
                OrderStatus::Invalid => {
                    withdraw(ctx, &published).await;
                    return Err(Failure::new("validation", "invalid"));
                }
                OrderStatus::Pending => {}
            }
            wait = ctx.poll.delay(&ctx.transport, &order_url);
        }
    }
    withdraw(ctx, &published).await;
    let validation = validation_start.elapsed();

    // Finalize, timed on its own.
    let finalize_start = Instant::now();
    order
        .finalize_csr(&plan.csr_der)
        .await
        .map_err(Failure::at("finalize"))?;
    let finalize_post = finalize_start.elapsed();
    let finalize_status = status_name(order.state().status);
    let finalize_to_valid = after_finalize(ctx, &mut order, deadline, &mut polls, finalize_start)
        .await
        .map_err(|mut f| {
            f.finalize_post = Some(finalize_post);
            f
        })?;
    Ok(Sample {
        finalize_post,
        finalize_to_valid,
        validation,
        issuance: start.elapsed(),
        finalize_status,
        polls,
    })
}

/// Polls a finalized order to `valid` and downloads the certificate;
/// returns finalize→valid.
async fn after_finalize(
    ctx: &Ctx,
    order: &mut Order,
    deadline: Instant,
    polls: &mut u32,
    finalize_start: Instant,
) -> Result<Duration, Failure> {
    let order_url = order.url().to_string();
    let mut wait = ctx
        .poll
        .delay(&ctx.transport, order.state().finalize.as_str());
    let mut status = order.state().status;
    while status == OrderStatus::Processing || status == OrderStatus::Ready {
        if Instant::now() + wait > deadline {
            return Err(Failure::new("finalize-poll", "timeout"));
        }
        tokio::time::sleep(wait).await;
        *polls += 1;
        status = order
            .refresh()
            .await
            .map_err(Failure::at("finalize-poll"))?
            .status;
        wait = ctx.poll.delay(&ctx.transport, &order_url);
    }
    let finalize_to_valid = finalize_start.elapsed();
    if status != OrderStatus::Valid {
        let error = order
            .state()
            .error
            .as_ref()
            .and_then(|p| p.r#type.clone())
            .map(|t| t.trim_start_matches(ACME_ERROR_PREFIX).to_string())
            .unwrap_or_else(|| status_name(status).to_string());
        return Err(Failure {
            stage: "order",
            error,
            finalize_post: None,
        });
    }
    let pem = download(order).await?;
    if !pem.contains("BEGIN CERTIFICATE") {
        return Err(Failure::new("download", "no certificate"));
    }
    Ok(finalize_to_valid)
}

async fn download(order: &mut Order) -> Result<String, Failure> {
    match order.certificate().await {
        Ok(Some(pem)) => Ok(pem),
        Ok(None) => Err(Failure::new("download", "still processing")),
        Err(e) => Err(Failure::at("download")(e)),
    }
}

async fn withdraw(ctx: &Ctx, published: &[(String, String)]) {
    for (name, token) in published {
        ctx.responder.withdraw(name, token).await;
    }
}

fn status_name(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::Pending => "pending",
        OrderStatus::Ready => "ready",
        OrderStatus::Processing => "processing",
        OrderStatus::Valid => "valid",
        OrderStatus::Invalid => "invalid",
    }
}
