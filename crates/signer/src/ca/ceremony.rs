//! The CA's offline ceremony (`kiln ca init`, `kiln ca issue-intermediate`):
//! the only code that uses the root's key. The root lives in a directory of
//! its own that no running service mounts; what the signer gets is a
//! separate directory with the intermediate, its key and the root's
//! certificate — never `root-key.pem`.

use super::{
    CaError, INTERMEDIATE_CERT, INTERMEDIATE_KEY, INTERMEDIATE_VALIDITY_DAYS, Issuer, IssuingCa,
    ROOT_CERT, ROOT_KEY, ROOT_VALIDITY_DAYS, ca_certificate, ca_name, io_err, load_issuer,
    p256_key, write_atomic,
};
use std::fs::{self, File};
use std::path::Path;

/// Makes a new root in `root_dir` (`root.pem`, `root-key.pem` 0600),
/// refusing to replace one that is there.
pub fn init_root(root_dir: &Path) -> Result<Issuer, CaError> {
    refuse_existing(root_dir, ROOT_CERT)?;
    let mut suffix = [0u8; 4];
    openssl::rand::rand_bytes(&mut suffix)?;
    let name = ca_name(&format!("Kiln Root CA {}", hex::encode(suffix)))?;
    let key = p256_key()?;
    let cert = ca_certificate(&name, &key, None, ROOT_VALIDITY_DAYS, None)?;
    let root = Issuer::new(cert, key.clone())?;
    fs::create_dir_all(root_dir).map_err(io_err(root_dir))?;
    write_atomic(root_dir, ROOT_KEY, &key.private_key_to_pem_pkcs8()?, 0o600)?;
    // Last: the certificate marks the root as complete.
    write_atomic(root_dir, ROOT_CERT, &root.cert.to_pem()?, 0o644)?;
    sync_dir(root_dir)?;
    Ok(root)
}

/// Issues a new intermediate from the root in `root_dir` into
/// `signer_dir` (`intermediate.pem`, `intermediate-key.pem` 0600, and the
/// root's certificate as `root.pem`): what `[signer] ca_dir` names.
/// Refuses to replace an intermediate already there, so a live key is
/// never overwritten.
pub fn issue_intermediate(root_dir: &Path, signer_dir: &Path) -> Result<IssuingCa, CaError> {
    let root = load_issuer(root_dir, ROOT_CERT, ROOT_KEY)?;
    if !root.cert.verify(root.file_key()?)? {
        return Err(CaError::Inconsistent(
            "root-key.pem is not the key of root.pem",
        ));
    }
    refuse_existing(signer_dir, INTERMEDIATE_CERT)?;
    let key = p256_key()?;
    let name = ca_name("Kiln Intermediate CA")?;
    let cert = ca_certificate(
        &name,
        &key,
        Some(&root),
        INTERMEDIATE_VALIDITY_DAYS,
        Some(0),
    )?;
    fs::create_dir_all(signer_dir).map_err(io_err(signer_dir))?;
    write_atomic(
        signer_dir,
        INTERMEDIATE_KEY,
        &key.private_key_to_pem_pkcs8()?,
        0o600,
    )?;
    write_atomic(signer_dir, ROOT_CERT, &root.cert.to_pem()?, 0o644)?;
    write_atomic(signer_dir, INTERMEDIATE_CERT, &cert.to_pem()?, 0o644)?;
    sync_dir(signer_dir)?;
    // What the signer will load, loaded the way it will be.
    IssuingCa::load(signer_dir)
}

fn refuse_existing(dir: &Path, file: &str) -> Result<(), CaError> {
    let path = dir.join(file);
    if path.try_exists().map_err(io_err(&path))? {
        return Err(CaError::InvalidRequest(format!(
            "{} exists: the ceremony never replaces a CA in place; move it away first",
            path.display()
        )));
    }
    Ok(())
}

/// Makes the renames themselves durable.
fn sync_dir(dir: &Path) -> Result<(), CaError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_signers_directory_gets_no_root_key_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (root_dir, signer_dir) = (dir.path().join("root"), dir.path().join("signer"));
        let root = init_root(&root_dir).unwrap();
        let issuing = issue_intermediate(&root_dir, &signer_dir).unwrap();
        assert!(
            !signer_dir.join(ROOT_KEY).exists(),
            "no root key for the signer"
        );
        assert!(
            issuing
                .intermediate
                .cert
                .verify(&root.cert.public_key().unwrap())
                .unwrap()
        );
        for (dir, key) in [(&root_dir, ROOT_KEY), (&signer_dir, INTERMEDIATE_KEY)] {
            let mode = fs::metadata(dir.join(key)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        // A second intermediate from the same root goes elsewhere, never over
        // the first; the root is never made twice.
        let again = issue_intermediate(&root_dir, &signer_dir).unwrap_err();
        assert!(matches!(again, CaError::InvalidRequest(_)), "{again}");
        let second = issue_intermediate(&root_dir, &dir.path().join("signer-2")).unwrap();
        assert_ne!(second.intermediate.cert, issuing.intermediate.cert);
        assert_eq!(second.root_cert, issuing.root_cert);
        assert!(matches!(
            init_root(&root_dir),
            Err(CaError::InvalidRequest(_))
        ));
    }

    #[test]
    fn an_intermediate_needs_a_root_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = issue_intermediate(&dir.path().join("none"), &dir.path().join("s"));
        assert!(missing.is_err());
        assert!(!dir.path().join("s").exists(), "nothing written");
    }
}
