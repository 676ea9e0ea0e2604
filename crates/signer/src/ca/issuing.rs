//! What a running signer loads: the issuing intermediate and the root's
//! certificate, never the root's key and never a CA of its own making.

use super::pkcs11::{Pkcs11Source, TokenKey, read_pin};
use super::{
    CaError, INTERMEDIATE_CERT, INTERMEDIATE_KEY, Issuer, ROOT_CERT, load_issuer, read_required,
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
}

impl IssuingCa {
    /// Loads `intermediate.pem`, `intermediate-key.pem` and `root.pem` from
    /// `dir`, and never creates a CA: a missing file is an error naming it.
    /// `root-key.pem` is not read, so it need not be there. The key file
    /// must be readable by its owner only.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let root_cert = X509::from_pem(&read_required(&dir.join(ROOT_CERT))?)?;
        let intermediate = load_issuer(dir, INTERMEDIATE_CERT, INTERMEDIATE_KEY)?;
        Self::checked(intermediate, root_cert)
    }

    /// Loads `intermediate.pem` and `root.pem` from `dir` and the
    /// intermediate's key from the token `source` names, logged in with the
    /// PIN in its `pin_file` (owner-only, as a key file). Refuses, naming
    /// the token and the key's label, a missing token or key, a wrong PIN,
    /// or a key that is not the certificate's (by the public key the token
    /// shows, and by one signature verified under the certificate).
    /// `intermediate-key.pem` is not read.
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
        Self::checked(intermediate, root_cert)
    }

    /// Refuses an intermediate that `root_cert` did not issue.
    fn checked(intermediate: Issuer, root_cert: X509) -> Result<Self, CaError> {
        let root_key = root_cert.public_key()?;
        if root_cert.issued(&intermediate.cert) != X509VerifyResult::OK
            || !intermediate.cert.verify(&root_key)?
        {
            return Err(CaError::Inconsistent(
                "intermediate.pem is not issued by root.pem",
            ));
        }
        Ok(Self {
            intermediate,
            root_cert,
        })
    }

    /// The issuing intermediate as the store records it: the one source the
    /// api (chain after each leaf) and ct-submitter (issuer after each
    /// precertificate) read, whatever their own configuration.
    pub fn issuer_record(&self) -> Result<store::Issuer, CaError> {
        let record = store::Issuer::new(self.intermediate.cert.to_der()?, self.chain_pem());
        debug_assert_eq!(record.id, self.intermediate.id());
        Ok(record)
    }

    /// PEM chain served to clients after a leaf: the intermediate only (the
    /// root is what relying parties already trust).
    pub fn chain_pem(&self) -> String {
        // PEM-encoding a certificate already held in memory only fails on
        // allocation failure, which Rust treats as fatal anyway.
        let pem = self
            .intermediate
            .cert
            .to_pem()
            .expect("PEM-encoding an in-memory certificate");
        String::from_utf8_lossy(&pem).into_owned()
    }
}
