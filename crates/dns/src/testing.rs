//! A real, in-process authoritative DNS server for tests (feature `testing`).
//!
//! One hickory-server in-memory zone at the root answers for every name, on a
//! random loopback port over UDP and TCP. Records can be changed while it
//! serves, chosen names can be made to answer SERVFAIL, and every query is
//! logged so tests can assert what was asked.
//!
//! ```text
//! let server = TestDnsServer::start().await;
//! server.set_caa("example.com", false, "issue", "kiln.test").await;
//! let dns = server.dns();
//! ```

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, CAA, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{
    AxfrPolicy, Catalog, MessageResponseBuilder, ZoneHandler, ZoneType,
};
use tokio::net::{TcpListener, UdpSocket};

use crate::{Dns, DnsMode};

/// TTL 0 everywhere (records and negative answers) so a resolver never
/// serves a test a stale answer after the zone changed.
const TTL: u32 = 0;
const SERIAL: u32 = 1;

/// One query the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedQuery {
    /// Lowercase, without the trailing dot.
    pub name: String,
    /// `A`, `TXT`, `CAA`, ...
    pub qtype: String,
}

/// The running server. Dropping it stops the server.
pub struct TestDnsServer {
    addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    state: Arc<Shared>,
    shutdown: Box<dyn Fn() + Send + Sync>,
}

#[derive(Default)]
struct Shared {
    servfail: Mutex<HashSet<LowerName>>,
    log: Mutex<Vec<LoggedQuery>>,
}

impl TestDnsServer {
    /// Binds UDP and TCP on the same random port on 127.0.0.1 and serves.
    /// Panics if it cannot (test helper).
    pub async fn start() -> TestDnsServer {
        let zone = Arc::new(InMemoryZoneHandler::empty(
            Name::root(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        ));
        let soa = SOA::new(
            Name::from_ascii("ns.test.").expect("static name"),
            Name::from_ascii("hostmaster.test.").expect("static name"),
            SERIAL,
            3600,
            600,
            86400,
            TTL,
        );
        zone.upsert(
            Record::from_rdata(Name::root(), TTL, RData::SOA(soa)),
            SERIAL,
        )
        .await;

        let mut catalog = Catalog::new();
        catalog.upsert(
            LowerName::from(Name::root()),
            vec![zone.clone() as Arc<dyn ZoneHandler>],
        );
        let state = Arc::new(Shared::default());
        let handler = Handler {
            catalog,
            state: state.clone(),
        };

        // UDP first on port 0, then TCP on the port it got (retry if taken).
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .expect("bind UDP");
            let port = udp.local_addr().expect("UDP addr").port();
            if let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().expect("UDP addr");

        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        let token = server.shutdown_token().clone();
        let task = tokio::spawn(async move {
            let _ = server.block_until_done().await;
        });
        let shutdown = Box::new(move || {
            token.cancel();
            task.abort();
        });

        TestDnsServer {
            addr,
            zone,
            state,
            shutdown,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A [`Dns`] client that asks this server.
    pub fn dns(&self) -> Dns {
        Dns::new(DnsMode::Server(self.addr)).expect("resolver for test server")
    }

    /// Adds an A or AAAA record (appends to the name's RRset).
    pub async fn set_a(&self, name: &str, ip: IpAddr) {
        let rdata = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        self.add(name, rdata).await;
    }

    /// Adds a TXT record with one character-string (appends to the RRset).
    pub async fn set_txt(&self, name: &str, value: &str) {
        self.add(name, RData::TXT(TXT::new(vec![value.to_owned()])))
            .await;
    }

    /// Adds a CAA record with a raw value (appends to the RRset), so tests
    /// can also serve malformed values.
    pub async fn set_caa(&self, name: &str, critical: bool, tag: &str, value: &str) {
        let mut caa = CAA::new_issue(critical, None, vec![]);
        tag.clone_into(&mut caa.tag);
        caa.value = value.as_bytes().to_vec();
        self.add(name, RData::CAA(caa)).await;
    }

    /// Makes every query for exactly `name` (any type) answer SERVFAIL.
    pub fn set_servfail(&self, name: &str) {
        lock(&self.state.servfail).insert(LowerName::from(fqdn(name)));
    }

    /// Makes `name` answer normally again after [`TestDnsServer::set_servfail`].
    pub fn clear_servfail(&self, name: &str) {
        lock(&self.state.servfail).remove(&LowerName::from(fqdn(name)));
    }

    /// Removes all records of `name` (all types).
    pub async fn remove(&self, name: &str) {
        let name = LowerName::from(fqdn(name));
        self.zone
            .records_mut()
            .await
            .retain(|key, _| key.name != name);
    }

    /// Removes every record (except the zone's SOA), every SERVFAIL name,
    /// and the query log.
    pub async fn clear(&self) {
        let root = LowerName::from(Name::root());
        let mut records = self.zone.records_mut().await;
        let kept: BTreeMap<RrKey, _> = std::mem::take(&mut *records)
            .into_iter()
            .filter(|(key, _)| key.name == root && key.record_type == RecordType::SOA)
            .collect();
        *records = kept;
        drop(records);
        lock(&self.state.servfail).clear();
        lock(&self.state.log).clear();
    }

    /// Every query received so far, in order (retransmissions included).
    pub fn queries(&self) -> Vec<LoggedQuery> {
        lock(&self.state.log).clone()
    }

    async fn add(&self, name: &str, rdata: RData) {
        let record = Record::from_rdata(fqdn(name), TTL, rdata);
        assert!(
            self.zone.upsert(record, SERIAL).await,
            "test DNS server refused a record for {name}"
        );
    }
}

impl Drop for TestDnsServer {
    fn drop(&mut self) {
        (self.shutdown)();
    }
}

fn fqdn(name: &str) -> Name {
    let mut n = Name::from_ascii(name).unwrap_or_else(|e| panic!("bad test name {name}: {e}"));
    n.set_fqdn(true);
    n
}

/// A poisoned lock only means another test thread panicked; the data is fine.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The catalog, wrapped to log queries and to fail chosen names.
struct Handler {
    catalog: Catalog,
    state: Arc<Shared>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let fail = match request.request_info() {
            Ok(info) => {
                let name = info.query.name();
                let mut shown = name.to_string();
                if shown.len() > 1 {
                    shown.pop(); // trailing dot
                }
                lock(&self.state.log).push(LoggedQuery {
                    name: shown.to_ascii_lowercase(),
                    qtype: info.query.query_type().to_string(),
                });
                lock(&self.state.servfail).contains(name)
            }
            Err(_) => false,
        };
        if !fail {
            return self
                .catalog
                .handle_request::<R, T>(request, response_handle)
                .await;
        }
        let response = MessageResponseBuilder::new(&request.queries, None)
            .error_msg(&request.metadata, ResponseCode::ServFail);
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(_) => {
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}
