//! `kiln ca init` and `kiln ca issue-intermediate`: the CA's offline
//! ceremony (`signer::ca::ceremony`), the only commands that use the root's
//! key.

use std::path::Path;

pub fn init(root_dir: &Path, signer_dir: &Path) -> anyhow::Result<()> {
    signer::ca::init_root(root_dir)?;
    println!("root ready in {}", root_dir.display());
    issue_intermediate(root_dir, signer_dir)
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
