//! The CA's offline ceremony (`kiln ca init [--cross-sign]`, `kiln ca
//! issue-intermediate`): the only code that uses a root's key. The roots
//! live in a directory of their own that no running service mounts; what
//! the signer gets is a separate directory with the intermediate, its key
//! and the root's certificate — never `root-key.pem` — and, for alternate
//! chains, the intermediate cross-signed by the alternate root with that
//! root's certificate.

use super::cross_sign::{
    ALTERNATE_ROOT_CERT, ALTERNATE_ROOT_KEY, CROSS_SIGNED_CERT, CrossSigned, new_alternate_root,
};
use super::{
    CaError, INTERMEDIATE_CERT, INTERMEDIATE_KEY, INTERMEDIATE_PATH_LEN,
    INTERMEDIATE_VALIDITY_DAYS, Issuer, IssuingCa, ROOT_CERT, ROOT_KEY, ROOT_LABEL, ca_certificate,
    ca_name, io_err, load_issuer, new_root, p256_key, read_required, sync_dir, write_atomic,
};
use openssl::x509::X509;
use std::fs;
use std::path::Path;

/// Makes a new root in `root_dir` (`root.pem`, `root-key.pem` 0600),
/// refusing to replace one that is there.
pub fn init_root(root_dir: &Path) -> Result<Issuer, CaError> {
    refuse_existing(root_dir, ROOT_CERT)?;
    let root = new_root(ROOT_LABEL)?;
    store_root(root_dir, &root, ROOT_CERT, ROOT_KEY)?;
    Ok(root)
}

/// Makes the second root that cross-signs intermediates for alternate
/// chains, in `root_dir` beside the first (`alternate-root.pem`,
/// `alternate-root-key.pem` 0600), refusing to replace one that is there.
pub fn init_alternate_root(root_dir: &Path) -> Result<Issuer, CaError> {
    refuse_existing(root_dir, ALTERNATE_ROOT_CERT)?;
    let root = new_alternate_root()?;
    store_root(root_dir, &root, ALTERNATE_ROOT_CERT, ALTERNATE_ROOT_KEY)?;
    Ok(root)
}

/// Writes a root's key (0600), then its certificate: last, as the mark that
/// the root is complete.
fn store_root(dir: &Path, root: &Issuer, cert_file: &str, key_file: &str) -> Result<(), CaError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let key = root.file_key()?.private_key_to_pem_pkcs8()?;
    write_atomic(dir, key_file, &key, 0o600)?;
    write_atomic(dir, cert_file, &root.cert.to_pem()?, 0o644)?;
    sync_dir(dir)
}

/// Issues a new intermediate from the root in `root_dir` into
/// `signer_dir` (`intermediate.pem`, `intermediate-key.pem` 0600, and the
/// root's certificate as `root.pem`): what `[signer] ca_dir` names.
/// Refuses to replace an intermediate already there, so a live key is
/// never overwritten.
pub fn issue_intermediate(root_dir: &Path, signer_dir: &Path) -> Result<IssuingCa, CaError> {
    let root = load_root(
        root_dir,
        ROOT_CERT,
        ROOT_KEY,
        "root-key.pem is not the key of root.pem",
    )?;
    refuse_existing(signer_dir, INTERMEDIATE_CERT)?;
    let key = p256_key()?;
    let name = ca_name("Kiln Intermediate CA")?;
    let cert = ca_certificate(
        &name,
        &key,
        Some(&root),
        INTERMEDIATE_VALIDITY_DAYS,
        Some(INTERMEDIATE_PATH_LEN),
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

/// Cross-signs the intermediate in `signer_dir` by the alternate root in
/// `root_dir`: the same subject and key, so its leaves verify under either
/// root. Writes `alternate-root.pem` and `intermediate-cross.pem` into
/// `signer_dir`, which the signer then offers as every leaf's alternate
/// chain. Only the intermediate's certificate is read (its key may be on a
/// token); an `intermediate-cross.pem` already there is never replaced.
pub fn cross_sign_intermediate(root_dir: &Path, signer_dir: &Path) -> Result<CrossSigned, CaError> {
    let alternate_root = load_root(
        root_dir,
        ALTERNATE_ROOT_CERT,
        ALTERNATE_ROOT_KEY,
        "alternate-root-key.pem is not the key of alternate-root.pem",
    )?;
    let intermediate = X509::from_pem(&read_required(&signer_dir.join(INTERMEDIATE_CERT))?)?;
    let default_root = X509::from_pem(&read_required(&signer_dir.join(ROOT_CERT))?)?;
    refuse_existing(signer_dir, CROSS_SIGNED_CERT)?;
    let cross = CrossSigned::issue(&intermediate, &alternate_root, &default_root)?;
    cross.store(signer_dir)?;
    Ok(cross)
}

/// A root from `dir`, refused (`mismatch`) unless its key is its
/// certificate's.
fn load_root(
    dir: &Path,
    cert_file: &str,
    key_file: &str,
    mismatch: &'static str,
) -> Result<Issuer, CaError> {
    let root = load_issuer(dir, cert_file, key_file)?;
    if !root.cert.verify(root.file_key()?)? {
        return Err(CaError::Inconsistent(mismatch));
    }
    Ok(root)
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

    /// `kiln ca init --cross-sign`: a second root certifies the same
    /// intermediate — the same subject and key — so a leaf of the
    /// intermediate verifies under either root, the cross-signed
    /// certificate leading to the alternate root only. The signer gets no
    /// root key of either.
    #[test]
    fn a_cross_signed_intermediate_is_the_same_ca_under_another_root() {
        use crate::ca::cross_sign::tests::verifies;
        let dir = tempfile::tempdir().unwrap();
        let (root_dir, signer_dir) = (dir.path().join("root"), dir.path().join("signer"));
        let root = init_root(&root_dir).unwrap();
        let alternate_root = init_alternate_root(&root_dir).unwrap();
        issue_intermediate(&root_dir, &signer_dir).unwrap();
        let cross = cross_sign_intermediate(&root_dir, &signer_dir).unwrap();

        let issuing = IssuingCa::load(&signer_dir).unwrap();
        let intermediate = &issuing.intermediate.cert;
        let loaded = issuing.cross_signed.as_ref().expect("the signer loads it");
        assert_eq!(loaded.intermediate_cert, cross.intermediate_cert);
        assert_eq!(loaded.root_cert, alternate_root.cert);
        let cross = &cross.intermediate_cert;
        assert_ne!(cross, intermediate);
        assert_eq!(
            cross.subject_name().to_der().unwrap(),
            intermediate.subject_name().to_der().unwrap()
        );
        assert!(
            cross
                .public_key()
                .unwrap()
                .public_eq(&intermediate.public_key().unwrap())
        );
        assert_eq!(
            cross.subject_key_id().unwrap().as_slice(),
            intermediate.subject_key_id().unwrap().as_slice()
        );
        assert!(cross.not_after() <= intermediate.not_after());
        let alternate_name = alternate_root.cert.subject_name();
        let cn = alternate_name.entries_by_nid(openssl::nid::Nid::COMMONNAME);
        let cn = cn.last().unwrap().data().to_string().unwrap();
        assert!(cn.starts_with("Kiln Alternate Root CA "), "{cn}");

        let (leaf, _) = issuing
            .intermediate
            .tls_server_certificate(&["cross.test"], &[])
            .unwrap();
        assert!(verifies(&leaf, intermediate, &root.cert));
        assert!(verifies(&leaf, cross, &alternate_root.cert));
        assert!(
            !verifies(&leaf, cross, &root.cert),
            "it leads to the alternate root"
        );
        assert!(!verifies(&leaf, intermediate, &alternate_root.cert));

        // Served after each leaf: the default chain and one alternate, each
        // the intermediate only, never a root.
        let record = issuing.issuer_record().unwrap();
        assert_eq!(record.chain_pem, issuing.chain_pem());
        assert_eq!(
            record.alternate_chains_pem,
            [String::from_utf8(cross.to_pem().unwrap()).unwrap()]
        );
        for file in [ROOT_KEY, ALTERNATE_ROOT_KEY] {
            assert!(
                !signer_dir.join(file).exists(),
                "{file} given to the signer"
            );
            let mode = fs::metadata(root_dir.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    /// The ceremony never replaces an alternate root or a cross-signed
    /// intermediate, and cross-signs nothing without an alternate root.
    #[test]
    fn cross_signing_refuses_to_overwrite_and_needs_an_alternate_root() {
        let dir = tempfile::tempdir().unwrap();
        let (root_dir, signer_dir) = (dir.path().join("root"), dir.path().join("signer"));
        init_root(&root_dir).unwrap();
        issue_intermediate(&root_dir, &signer_dir).unwrap();
        let none = cross_sign_intermediate(&root_dir, &signer_dir).unwrap_err();
        assert!(
            matches!(&none, CaError::Incomplete(path) if path.ends_with(ALTERNATE_ROOT_CERT)),
            "{none}"
        );
        assert!(
            !signer_dir.join(CROSS_SIGNED_CERT).exists(),
            "nothing written"
        );

        let alternate_root = init_alternate_root(&root_dir).unwrap();
        let first = cross_sign_intermediate(&root_dir, &signer_dir).unwrap();
        let again = cross_sign_intermediate(&root_dir, &signer_dir).unwrap_err();
        assert!(matches!(again, CaError::InvalidRequest(_)), "{again}");
        let root_again = init_alternate_root(&root_dir).unwrap_err();
        assert!(
            matches!(root_again, CaError::InvalidRequest(_)),
            "{root_again}"
        );
        // Both files are the first ones still.
        let kept = fs::read(signer_dir.join(CROSS_SIGNED_CERT)).unwrap();
        assert_eq!(kept, first.intermediate_cert.to_pem().unwrap());
        let kept = fs::read(root_dir.join(ALTERNATE_ROOT_CERT)).unwrap();
        assert_eq!(kept, alternate_root.cert.to_pem().unwrap());
    }
}
