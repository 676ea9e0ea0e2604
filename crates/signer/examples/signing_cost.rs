//! CPU cost of certificate building, per precertificate and per final
//! certificate, as the signer stage pays it for every order (the DER
//! builders it calls).
//!
//! `cargo run --release -p signer --example signing_cost [N]` issues N
//! (default 2000) leaves for fresh P-256 subject keys under a generated CA
//! and prints the CPU microseconds this thread spent per certificate. CPU
//! time (not wall time) so that other load on the machine does not count.
//! The kernel adds a running thread's time at each tick (4 ms here), so N
//! should make each phase last well over a tick.

use std::time::Instant;

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use signer::ca::CaHierarchy;
use signer::certificate::{LeafRequest, Profile, final_certificate_der, precertificate_der};
use signer::serial::new_serial;

/// CPU time this thread has run, in nanoseconds (Linux schedstat).
fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("/proc/thread-self/schedstat (Linux)");
    stat.split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .expect("schedstat starts with the CPU time in ns")
}

/// A syntactically valid SCT list extension value with one fake SCT (the
/// signer checks the framing only).
fn sct_list_extension() -> Vec<u8> {
    let sct = [0x5a_u8; 118];
    let mut list = ((sct.len() + 2) as u16).to_be_bytes().to_vec();
    list.extend((sct.len() as u16).to_be_bytes());
    list.extend(sct);
    let mut ext = vec![0x04, list.len() as u8];
    ext.extend(list);
    ext
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("N is a count"))
        .unwrap_or(2000);
    let ca = CaHierarchy::generate().expect("CA");
    let profile = Profile::new(
        "http://kiln.test/ca/intermediate.der",
        "http://kiln.test/ca/crl",
    );
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (not_before, not_after) = profile.validity_window(now);
    let requests: Vec<LeafRequest> = (0..n)
        .map(|i| {
            let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("key");
            LeafRequest {
                serial: new_serial(0x01).expect("serial"),
                dns_names: vec![format!("host{i}.example.com"), "example.com".into()],
                ip_addresses: vec![],
                public_key_der: key.public_key_to_der().expect("SPKI"),
                not_before,
                not_after,
            }
        })
        .collect();
    let sct_list = sct_list_extension();

    // One of each first, so one-time set-up is not counted.
    let warm =
        precertificate_der(&ca.intermediate, &requests[0], &profile).expect("precertificate");
    final_certificate_der(&ca.intermediate, &warm, &sct_list).expect("final certificate");

    let wall = Instant::now();
    let cpu = thread_cpu_ns();
    let precerts: Vec<Vec<u8>> = requests
        .iter()
        .map(|req| precertificate_der(&ca.intermediate, req, &profile).expect("precertificate"))
        .collect();
    let precert_cpu = thread_cpu_ns() - cpu;
    let precert_wall = wall.elapsed();

    let wall = Instant::now();
    let cpu = thread_cpu_ns();
    for precert in &precerts {
        final_certificate_der(&ca.intermediate, precert, &sct_list).expect("final certificate");
    }
    let final_cpu = thread_cpu_ns() - cpu;
    let final_wall = wall.elapsed();

    let per = |ns: u64| ns as f64 / 1_000.0 / n as f64;
    println!("{n} certificates of each kind, P-256 issuer and subject keys");
    println!(
        "precertificate: {:8.1} µs CPU each ({:8.1} µs wall)",
        per(precert_cpu),
        per(precert_wall.as_nanos() as u64)
    );
    println!(
        "final:          {:8.1} µs CPU each ({:8.1} µs wall)",
        per(final_cpu),
        per(final_wall.as_nanos() as u64)
    );
}
