//! `fake-dns`: an authoritative DNS server on loopback for a CA run on one
//! machine (`deploy/local/cluster.sh`): every name has the A record
//! 127.0.0.1 and nothing else (no AAAA, TXT or CAA). The production
//! `validator` and `caa-checker` never fall back to such answers by
//! themselves; this is what a local cluster points them at instead.
//!
//! Prints `IP:PORT` on stdout once it serves (UDP and TCP), then runs until
//! SIGTERM or SIGINT.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};

use dns::testing::TestDnsServer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let server = TestDnsServer::start().await;
    server.set_a("*", IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    println!("{}", server.addr());
    std::io::stdout().flush()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    drop(server);
    Ok(())
}
