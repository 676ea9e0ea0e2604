//! What a running signer loads: the issuing intermediate and the root's
//! certificate (and, when there is one, the intermediate cross-signed by an
//! alternate root), never a root's key and never a CA of its own making.

use super::certify::pem_text;
use super::pkcs11::{Pkcs11Source, TokenKey, read_pin};
use super::{
    CaError, CrossSigned, INTERMEDIATE_CERT, INTERMEDIATE_KEY, Issuer, ROOT_CERT, load_issuer,
    read_required,
};
use openssl::x509::{X509, X509VerifyResult};
use std::path::Path;

/// What a running signer holds: the issuing intermediate, and the root's
/// certificate to check it against — never the root's key, which only the
/// CA's ceremony (`kiln init`, or the all-in-one on a laptop) uses.
#[derive(Clone, Debug)]
pub struct IssuingCa {
    pub intermediate: Issuer,
    pub root_cert: X509,
    /// The same intermediate certified by an alternate root, offered as
    /// every leaf's alternate chain (RFC 8555 §7.4.2).
    pub cross_signed: Option<CrossSigned>,
}

impl IssuingCa {
    /// Loads `intermediate.pem`, `intermediate-key.pem` and `root.pem` from
    /// `dir`, and never creates a CA: a missing file is an error naming it.
    /// `root-key.pem` is not read, so it need not be there. The key file
    /// must be readable by its owner only. An `intermediate-cross.pem` there
    /// (with `alternate-root.pem`) is loaded too, and refused unless it
    /// certifies the same subject and key under another root.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let root_cert = X509::from_pem(&read_required(&dir.join(ROOT_CERT))?)?;
        let intermediate = load_issuer(dir, INTERMEDIATE_CERT, INTERMEDIATE_KEY)?;
        Self::checked(intermediate, root_cert, dir)
    }

    /// Loads `intermediate.pem` and `root.pem` from `dir` and the
    /// intermediate's key from the token `source` names, logged in with the
    /// PIN in its `pin_file` (owner-only, as a key file). Refuses, naming
    /// the token and the key's label, a missing token or key, a wrong PIN,
    /// or a key that is not the certificate's (by the public key the token
    /// shows, and by one signature verified under the certificate).
    /// `intermediate-key.pem` is not read; a cross-signed intermediate is,
    /// as by [`IssuingCa::load`].
    pub fn load_with_token(dir: &Path, source: &Pkcs11Source) -> Result<Self, CaError> {
        let root_cert = X509::from_pem(&read_required(&dir.join(ROOT_CERT))?)?;
        let cert = X509::from_pem(&read_required(&dir.join(INTERMEDIATE_CERT))?)?;
        let pin = read_pin(&source.pin_file)?;
        let token = TokenKey::open(source, pin, &cert.public_key()?)?;
        let intermediate = Issuer::on_token(cert, token)?;
        let stray = dir.join(INTERMEDIATE_KEY);
        if stray.exists() {
            tracing::warn!(
                path = %stray.display(),
                token = %source.token_label,
                "the intermediate's key is on the token, yet a key file is beside the certificate: remove it"
            );
        }
        Self::checked(intermediate, root_cert, dir)
    }

    /// Refuses an intermediate that `root_cert` did not issue, or a
    /// cross-signed one in `dir` that is not the intermediate's.
    fn checked(intermediate: Issuer, root_cert: X509, dir: &Path) -> Result<Self, CaError> {
        let root_key = root_cert.public_key()?;
        if root_cert.issued(&intermediate.cert) != X509VerifyResult::OK
            || !intermediate.cert.verify(&root_key)?
        {
            return Err(CaError::Inconsistent(
                "intermediate.pem is not issued by root.pem",
            ));
        }
        let cross_signed = CrossSigned::load(dir, &intermediate.cert, &root_cert)?;
        Ok(Self {
            intermediate,
            root_cert,
            cross_signed,
        })
    }

    /// The issuing intermediate as the store records it: the one source the
    /// api (chain after each leaf) and ct-submitter (issuer after each
    /// precertificate) read, whatever their own configuration.
    pub fn issuer_record(&self) -> Result<store::Issuer, CaError> {
        let record = store::Issuer::new(self.intermediate.cert.to_der()?, self.chain_pem())
            .with_alternate_chains(self.alternate_chains_pem());
        debug_assert_eq!(record.id, self.intermediate.id());
        Ok(record)
    }

    /// PEM chain served to clients after a leaf: the intermediate only (the
    /// root is what relying parties already trust).
    pub fn chain_pem(&self) -> String {
        pem_text(&self.intermediate.cert)
    }

    /// The other chains served after a leaf, in the order the api numbers
    /// them (1, 2, …): the cross-signed intermediate, when there is one.
    pub fn alternate_chains_pem(&self) -> Vec<String> {
        self.cross_signed
            .iter()
            .map(CrossSigned::chain_pem)
            .collect()
    }
}
