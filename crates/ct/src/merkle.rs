//! Merkle tree hashes (RFC 6962 §2.1) and signed tree heads (§3.5, §4.3).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use openssl::sha::{Sha256, sha256};
use serde::{Deserialize, Serialize};

use crate::sct::{decode_digitally_signed, encode_digitally_signed};
use crate::sign::verify_digitally_signed;
use crate::{CtError, SCT_VERSION_V1};

const SIGNATURE_TYPE_TREE_HASH: u8 = 1;

/// `MTH({d})` = SHA-256(0x00 || d).
pub fn leaf_hash(leaf_input: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&[0x00]);
    h.update(leaf_input);
    h.finish()
}

/// The Merkle Tree Hash over already hashed leaves (§2.1).
pub fn merkle_tree_hash(leaf_hashes: &[[u8; 32]]) -> [u8; 32] {
    match leaf_hashes {
        [] => sha256(b""),
        [one] => *one,
        _ => {
            // k is the largest power of two smaller than n.
            let k = leaf_hashes.len().next_power_of_two() / 2;
            let mut h = Sha256::new();
            h.update(&[0x01]);
            h.update(&merkle_tree_hash(&leaf_hashes[..k]));
            h.update(&merkle_tree_hash(&leaf_hashes[k..]));
            h.finish()
        }
    }
}

/// The `TreeHeadSignature` input (§3.5).
pub fn tree_head_signed_data(timestamp: u64, tree_size: u64, root_hash: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(50);
    out.push(SCT_VERSION_V1);
    out.push(SIGNATURE_TYPE_TREE_HASH);
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&tree_size.to_be_bytes());
    out.extend_from_slice(root_hash);
    out
}

/// Response of `get-sth` (§4.3); binary fields are base64, the signature is a TLS
/// `DigitallySigned` struct.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetSthResponse {
    pub tree_size: u64,
    pub timestamp: u64,
    pub sha256_root_hash: String,
    pub tree_head_signature: String,
}

impl GetSthResponse {
    pub fn root_hash(&self) -> Result<[u8; 32], CtError> {
        B64.decode(&self.sha256_root_hash)?
            .try_into()
            .map_err(|_| CtError::Tls("root hash is not 32 bytes"))
    }
}

impl crate::LogSigner {
    /// Signs a tree head and returns it in its `get-sth` JSON form.
    pub fn sign_tree_head(
        &self,
        timestamp: u64,
        tree_size: u64,
        root_hash: &[u8; 32],
    ) -> Result<GetSthResponse, CtError> {
        let signature = self.sign(&tree_head_signed_data(timestamp, tree_size, root_hash))?;
        let ds = encode_digitally_signed(crate::HASH_SHA256, crate::SIG_ECDSA, &signature)?;
        Ok(GetSthResponse {
            tree_size,
            timestamp,
            sha256_root_hash: B64.encode(root_hash),
            tree_head_signature: B64.encode(ds),
        })
    }
}

/// Verifies a signed tree head against the log's public key.
pub fn verify_sth(sth: &GetSthResponse, log_spki_der: &[u8]) -> Result<(), CtError> {
    let (hash_alg, sig_alg, signature) =
        decode_digitally_signed(&B64.decode(&sth.tree_head_signature)?)?;
    let data = tree_head_signed_data(sth.timestamp, sth.tree_size, &sth.root_hash()?);
    verify_digitally_signed(hash_alg, sig_alg, &signature, log_spki_der, &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Test vectors from the certificate-transparency reference implementation
    /// (merkle_tree_test: the first eight leaves and the roots of their prefixes).
    #[test]
    fn merkle_tree_hash_matches_reference_vectors() {
        let leaves: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let hashes: Vec<[u8; 32]> = leaves.iter().map(|l| leaf_hash(l)).collect();
        assert_eq!(
            hex(&merkle_tree_hash(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        for (n, root) in roots.iter().enumerate() {
            assert_eq!(
                hex(&merkle_tree_hash(&hashes[..=n])),
                *root,
                "tree of {}",
                n + 1
            );
        }
    }
}
