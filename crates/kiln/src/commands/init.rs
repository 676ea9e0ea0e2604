//! `kiln init`: the CA and the files a distributed deployment reads.

use std::net::IpAddr;
use std::path::Path;

/// Creates the CA if `dir/ca` holds none — the root in `root_dir` (if not
/// there already), its intermediate in `dir/ca`, where the signer finds it
/// with no root key beside it — and writes `dir/root.pem`, `dir/chain.pem`
/// and the api's HTTPS certificate and key for `api_names`.
pub fn init(dir: &Path, root_dir: &Path, api_names: &[String]) -> anyhow::Result<()> {
    let signer_dir = dir.join("ca");
    let ca = if signer_dir.join("intermediate.pem").exists() {
        signer::ca::IssuingCa::load(&signer_dir)?
    } else {
        if !root_dir.join("root.pem").exists() {
            signer::ca::init_root(root_dir)?;
        }
        signer::ca::issue_intermediate(root_dir, &signer_dir)?
    };
    std::fs::write(dir.join("root.pem"), ca.root_cert.to_pem()?)?;
    std::fs::write(dir.join("chain.pem"), ca.chain_pem())?;
    let (ips, names): (Vec<&String>, Vec<&String>) =
        api_names.iter().partition(|n| n.parse::<IpAddr>().is_ok());
    let ips: Vec<IpAddr> = ips.iter().filter_map(|n| n.parse().ok()).collect();
    let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
    let (cert, key) = ca.intermediate.tls_server_certificate(&names, &ips)?;
    let mut chain = cert.to_pem()?;
    chain.extend_from_slice(ca.chain_pem().as_bytes());
    std::fs::write(dir.join("api-tls-chain.pem"), chain)?;
    crate::write_private(
        &dir.join("api-tls-key.pem"),
        &key.private_key_to_pem_pkcs8()?,
    )?;
    println!(
        "CA ready in {} (the signer's; the root's key is in {})",
        signer_dir.display(),
        root_dir.display()
    );
    println!("  root: {}", dir.join("root.pem").display());
    Ok(())
}
