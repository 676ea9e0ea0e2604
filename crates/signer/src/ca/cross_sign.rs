//! Alternate chains (RFC 8555 §7.4.2): a second root ("Kiln Alternate Root
//! CA …") certifies the issuing intermediate's subject and key once more, so
//! every leaf the intermediate signs verifies under either root, and the api
//! offers the cross-signed certificate as each leaf's alternate chain.
//!
//! The signer's directory holds it as `intermediate-cross.pem`, beside the
//! alternate root's certificate (`alternate-root.pem`). The alternate root's
//! key stays with the ceremony (`alternate-root-key.pem`: in the root
//! directory, or in the all-in-one's CA directory beside its root key).

use super::certify::{certify, new_root, pem_text};
use super::files::{read_required, sync_dir, write_atomic};
use super::{CaError, CaHierarchy, INTERMEDIATE_PATH_LEN, Issuer, io_err};
use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::x509::{X509, X509Ref, X509VerifyResult};
use std::cmp::Ordering;
use std::path::Path;

pub(super) const ALTERNATE_ROOT_CERT: &str = "alternate-root.pem";
pub(super) const ALTERNATE_ROOT_KEY: &str = "alternate-root-key.pem";
pub(super) const CROSS_SIGNED_CERT: &str = "intermediate-cross.pem";
/// What the alternate root's common name begins with: the name clients'
/// `--preferred-chain` picks this chain by (a random suffix follows).
const ALTERNATE_ROOT_LABEL: &str = "Kiln Alternate Root CA";

/// The issuing intermediate as the alternate root certifies it, and that
/// root's certificate: one alternate chain.
#[derive(Clone, Debug)]
pub struct CrossSigned {
    /// The intermediate's subject and public key, issued by `root_cert`.
    pub intermediate_cert: X509,
    /// The alternate root (self-signed; not part of the served chain).
    pub root_cert: X509,
}

impl CrossSigned {
    /// Certifies `intermediate`'s subject and key by `alternate_root`,
    /// expiring with the intermediate (or the root, if that is sooner).
    pub(super) fn issue(
        intermediate: &X509Ref,
        alternate_root: &Issuer,
        default_root: &X509Ref,
    ) -> Result<Self, CaError> {
        let not_after =
            unix_time(intermediate.not_after())?.min(unix_time(alternate_root.cert.not_after())?);
        let intermediate_key = intermediate.public_key()?;
        let intermediate_cert = certify(
            intermediate.subject_name(),
            &intermediate_key,
            Some(&alternate_root.cert),
            alternate_root.file_key()?,
            not_after,
            Some(INTERMEDIATE_PATH_LEN),
        )?;
        CrossSigned {
            intermediate_cert,
            root_cert: alternate_root.cert.clone(),
        }
        .checked(intermediate, default_root)
    }

    /// The cross-signed intermediate in `dir`, if there is one (then
    /// `alternate-root.pem` must be there too), refused unless it is
    /// `intermediate`'s ([`CrossSigned::checked`]).
    pub(super) fn load(
        dir: &Path,
        intermediate: &X509Ref,
        default_root: &X509Ref,
    ) -> Result<Option<Self>, CaError> {
        let path = dir.join(CROSS_SIGNED_CERT);
        if !path.try_exists().map_err(io_err(&path))? {
            return Ok(None);
        }
        let cross = CrossSigned {
            intermediate_cert: X509::from_pem(&read_required(&path)?)?,
            root_cert: X509::from_pem(&read_required(&dir.join(ALTERNATE_ROOT_CERT))?)?,
        };
        cross.checked(intermediate, default_root).map(Some)
    }

    /// Refuses a cross-signed certificate that does not certify exactly
    /// `intermediate`'s subject and key — and so its key identifier, which
    /// every leaf names as its authority key — or that the alternate root
    /// did not issue, or an alternate root named as the default one (a
    /// client tells chains apart by the name of their top issuer).
    fn checked(self, intermediate: &X509Ref, default_root: &X509Ref) -> Result<Self, CaError> {
        let cross = &self.intermediate_cert;
        let same_subject =
            cross.subject_name().try_cmp(intermediate.subject_name())? == Ordering::Equal;
        let intermediate_key = intermediate.public_key()?;
        let same_key = cross.public_key()?.public_eq(&intermediate_key);
        let same_key_id = cross.subject_key_id().map(|id| id.as_slice())
            == intermediate.subject_key_id().map(|id| id.as_slice());
        if !(same_subject && same_key && same_key_id) {
            return Err(CaError::Inconsistent(
                "intermediate-cross.pem does not certify intermediate.pem's subject and key",
            ));
        }
        let root_key = self.root_cert.public_key()?;
        if self.root_cert.issued(cross) != X509VerifyResult::OK || !cross.verify(&root_key)? {
            return Err(CaError::Inconsistent(
                "intermediate-cross.pem is not issued by alternate-root.pem",
            ));
        }
        if self
            .root_cert
            .subject_name()
            .try_cmp(default_root.subject_name())?
            == Ordering::Equal
        {
            return Err(CaError::Inconsistent(
                "alternate-root.pem has the name of root.pem: clients could not tell the chains apart",
            ));
        }
        Ok(self)
    }

    /// Writes the alternate root's certificate, then the cross-signed
    /// intermediate: last, as the mark that the pair is complete.
    pub(super) fn store(&self, dir: &Path) -> Result<(), CaError> {
        write_atomic(dir, ALTERNATE_ROOT_CERT, &self.root_cert.to_pem()?, 0o644)?;
        write_atomic(
            dir,
            CROSS_SIGNED_CERT,
            &self.intermediate_cert.to_pem()?,
            0o644,
        )?;
        sync_dir(dir)
    }

    /// What follows a leaf in this chain: the cross-signed intermediate
    /// only, as the default chain is the intermediate only (the root is
    /// what relying parties already hold).
    pub fn chain_pem(&self) -> String {
        pem_text(&self.intermediate_cert)
    }
}

/// A new alternate root, its key in memory.
pub(super) fn new_alternate_root() -> Result<Issuer, CaError> {
    new_root(ALTERNATE_ROOT_LABEL)
}

impl CaHierarchy {
    /// The same CA offering an alternate chain: the cross-signed
    /// intermediate in `dir` (the directory it was loaded from), made there
    /// with a new alternate root if there is none — the all-in-one's
    /// `--alternate-chain`. The alternate root's key is kept beside the
    /// root's, as `alternate-root-key.pem` (0600). As for the CA itself,
    /// `intermediate-cross.pem` is written last: without it, leftovers of an
    /// interrupted run are replaced.
    pub fn with_alternate_chain(mut self, dir: &Path) -> Result<Self, CaError> {
        let loaded = CrossSigned::load(dir, &self.intermediate.cert, &self.root.cert)?;
        let cross = match loaded {
            Some(cross) => cross,
            None => {
                let alternate_root = new_alternate_root()?;
                let key = alternate_root.file_key()?.private_key_to_pem_pkcs8()?;
                write_atomic(dir, ALTERNATE_ROOT_KEY, &key, 0o600)?;
                let cross =
                    CrossSigned::issue(&self.intermediate.cert, &alternate_root, &self.root.cert)?;
                cross.store(dir)?;
                cross
            }
        };
        self.cross_signed = Some(cross);
        Ok(self)
    }
}

/// Seconds since the Unix epoch of a certificate time.
fn unix_time(time: &Asn1TimeRef) -> Result<i64, CaError> {
    let since_epoch = Asn1Time::from_unix(0)?.diff(time)?;
    Ok(i64::from(since_epoch.days) * super::DAY + i64::from(since_epoch.secs))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::ca::IssuingCa;
    use openssl::stack::Stack;
    use openssl::x509::X509StoreContext;
    use openssl::x509::store::X509StoreBuilder;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    /// Whether `leaf`, sent with `intermediate`, verifies under `root` alone.
    pub(crate) fn verifies(leaf: &X509, intermediate: &X509, root: &X509) -> bool {
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(root.clone()).unwrap();
        let store = store.build();
        let mut chain = Stack::new().unwrap();
        chain.push(intermediate.clone()).unwrap();
        let mut context = X509StoreContext::new().unwrap();
        context
            .init(&store, leaf, &chain, |c| c.verify_cert())
            .unwrap()
    }

    /// `kiln --alternate-chain`: made once in the CA's directory, then
    /// loaded; without the flag the all-in-one offers none, while the
    /// production signer loads what its directory holds.
    #[test]
    fn the_all_in_one_makes_its_alternate_chain_once() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CaHierarchy::load_or_create(dir.path()).unwrap();
        assert!(ca.cross_signed.is_none());
        assert!(ca.issuing().alternate_chains_pem().is_empty());
        let offering = ca.with_alternate_chain(dir.path()).unwrap();
        let made = offering.cross_signed.clone().expect("made");
        let key = dir.path().join(ALTERNATE_ROOT_KEY);
        assert_eq!(fs_mode(&key), 0o600);
        let (leaf, _) = offering
            .tls_server_certificate(&["alternate.test"], &[])
            .unwrap();
        assert!(verifies(&leaf, &made.intermediate_cert, &made.root_cert));
        assert_eq!(
            offering.issuing().alternate_chains_pem(),
            [made.chain_pem()]
        );

        let again = CaHierarchy::load_or_create(dir.path()).unwrap();
        assert!(again.cross_signed.is_none(), "only when asked");
        let again = again.with_alternate_chain(dir.path()).unwrap();
        let loaded = again.cross_signed.expect("loaded");
        assert_eq!(loaded.intermediate_cert, made.intermediate_cert);
        assert_eq!(loaded.root_cert, made.root_cert);
        let signer = IssuingCa::load(dir.path()).unwrap();
        assert_eq!(
            signer.cross_signed.map(|c| c.intermediate_cert),
            Some(made.intermediate_cert)
        );
    }

    /// A cross-signed certificate is refused unless it is the intermediate's
    /// (subject and key) under another root's name and signature.
    #[test]
    fn a_cross_signature_of_something_else_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for dir in [&a, &b] {
            let ca = CaHierarchy::load_or_create(dir.path()).unwrap();
            ca.with_alternate_chain(dir.path()).unwrap();
        }
        let inconsistent = |dir: &Path| match IssuingCa::load(dir) {
            Err(CaError::Inconsistent(why)) => why,
            other => panic!("must be refused: {other:?}"),
        };
        let (a, b) = (a.path(), b.path());
        let copy = |from: &Path, file: &str, to: &Path, as_file: &str| {
            fs::copy(from.join(file), to.join(as_file)).unwrap();
        };
        let (cross, alternate_root) = (
            fs::read(a.join(CROSS_SIGNED_CERT)).unwrap(),
            fs::read(a.join(ALTERNATE_ROOT_CERT)).unwrap(),
        );
        IssuingCa::load(a).unwrap().cross_signed.expect("as made");
        // Another intermediate's cross-signature (with its own root).
        copy(b, CROSS_SIGNED_CERT, a, CROSS_SIGNED_CERT);
        copy(b, ALTERNATE_ROOT_CERT, a, ALTERNATE_ROOT_CERT);
        assert!(inconsistent(a).contains("subject and key"));
        // The right certificate, but another alternate root.
        fs::write(a.join(CROSS_SIGNED_CERT), &cross).unwrap();
        assert!(inconsistent(a).contains("not issued by"));
        fs::write(a.join(ALTERNATE_ROOT_CERT), &alternate_root).unwrap();
        IssuingCa::load(a).unwrap().cross_signed.expect("as made");
        // The default root posing as the alternate one.
        copy(a, "intermediate.pem", a, CROSS_SIGNED_CERT);
        copy(a, "root.pem", a, ALTERNATE_ROOT_CERT);
        assert!(inconsistent(a).contains("name of root.pem"));
        // A cross-signed certificate without its root is named as missing.
        fs::remove_file(a.join(ALTERNATE_ROOT_CERT)).unwrap();
        match IssuingCa::load(a) {
            Err(CaError::Incomplete(path)) => assert!(path.ends_with(ALTERNATE_ROOT_CERT)),
            other => panic!("must name alternate-root.pem: {other:?}"),
        }
    }

    fn fs_mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }
}
