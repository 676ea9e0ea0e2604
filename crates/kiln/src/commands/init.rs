//! `kiln init`: the CA and the files a distributed deployment reads.

use std::net::IpAddr;
use std::path::Path;

/// Creates the CA in `dir/ca` if absent, and writes `dir/root.pem`,
/// `dir/chain.pem` and the api's HTTPS certificate and key for `api_names`.
pub fn init(dir: &Path, api_names: &[String]) -> anyhow::Result<()> {
    let ca = signer::ca::CaHierarchy::load_or_create(&dir.join("ca"))?;
    std::fs::write(dir.join("root.pem"), ca.root.cert.to_pem()?)?;
    std::fs::write(dir.join("chain.pem"), ca.chain_pem())?;
    let (ips, names): (Vec<&String>, Vec<&String>) =
        api_names.iter().partition(|n| n.parse::<IpAddr>().is_ok());
    let ips: Vec<IpAddr> = ips.iter().filter_map(|n| n.parse().ok()).collect();
    let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
    let (cert, key) = ca.tls_server_certificate(&names, &ips)?;
    let mut chain = cert.to_pem()?;
    chain.extend_from_slice(ca.chain_pem().as_bytes());
    std::fs::write(dir.join("api-tls-chain.pem"), chain)?;
    crate::write_private(
        &dir.join("api-tls-key.pem"),
        &key.private_key_to_pem_pkcs8()?,
    )?;
    println!("CA ready in {}", dir.join("ca").display());
    println!("  root: {}", dir.join("root.pem").display());
    Ok(())
}
