//! Minimal TLS presentation-language (RFC 5246 §4) reader and writer helpers.

use crate::CtError;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], CtError> {
        if self.buf.len() < n {
            return Err(CtError::Tls("truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], CtError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CtError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, CtError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, CtError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// `opaque x<0..2^16-1>`
    pub(crate) fn u16_prefixed(&mut self) -> Result<&'a [u8], CtError> {
        let len = self.u16()?;
        self.bytes(usize::from(len))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn finish(self) -> Result<(), CtError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CtError::Tls("trailing bytes"))
        }
    }
}

/// Appends `opaque data<0..2^16-1>`.
pub(crate) fn put_u16_prefixed(
    out: &mut Vec<u8>,
    what: &'static str,
    data: &[u8],
) -> Result<(), CtError> {
    let len = u16::try_from(data.len()).map_err(|_| CtError::TooLong {
        what,
        len: data.len(),
        max: usize::from(u16::MAX),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

/// Appends `opaque data<0..2^24-1>` (ASN.1Cert and TBSCertificate in RFC 6962).
pub(crate) fn put_u24_prefixed(
    out: &mut Vec<u8>,
    what: &'static str,
    data: &[u8],
) -> Result<(), CtError> {
    const MAX: usize = (1 << 24) - 1;
    if data.len() > MAX {
        return Err(CtError::TooLong {
            what,
            len: data.len(),
            max: MAX,
        });
    }
    out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(data);
    Ok(())
}
