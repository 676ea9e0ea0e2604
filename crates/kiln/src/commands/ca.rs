//! `kiln ca init [--cross-sign]` and `kiln ca issue-intermediate`: the CA's
//! offline ceremony (`signer::ca::ceremony`), the only commands that use a
//! root's key.

use std::path::Path;

/// A root and its first intermediate; with `cross_sign`, also a second root
/// that cross-signs the intermediate (alternate chains, RFC 8555 §7.4.2).
pub fn init(root_dir: &Path, signer_dir: &Path, cross_sign: bool) -> anyhow::Result<()> {
    signer::ca::init_root(root_dir)?;
    println!("root ready in {}", root_dir.display());
    if cross_sign {
        signer::ca::init_alternate_root(root_dir)?;
        println!("alternate root ready in {}", root_dir.display());
    }
    issue_intermediate(root_dir, signer_dir)?;
    if cross_sign {
        let cross = signer::ca::cross_sign_intermediate(root_dir, signer_dir)?;
        println!(
            "intermediate cross-signed by {} in {}: the signer offers it as an alternate chain",
            common_name(cross.root_cert.subject_name()),
            signer_dir.display()
        );
    }
    Ok(())
}

pub fn issue_intermediate(root_dir: &Path, signer_dir: &Path) -> anyhow::Result<()> {
    let issuing = signer::ca::issue_intermediate(root_dir, signer_dir)?;
    let serial = issuing
        .intermediate
        .cert
        .serial_number()
        .to_bn()?
        .to_hex_str()?;
    println!(
        "intermediate {serial} ready in {}: give the signer this directory; keep {} offline",
        signer_dir.display(),
        root_dir.display()
    );
    Ok(())
}

/// A certificate name's common name, as `--preferred-chain` takes it.
fn common_name(name: &openssl::x509::X509NameRef) -> String {
    name.entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .last()
        .and_then(|cn| cn.data().to_string().ok())
        .unwrap_or_default()
}
