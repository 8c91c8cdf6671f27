//! The subject common name of a DER certificate, read with a minimal DER
//! walk (for the auth server and `/stats`).

/// The common name (OID 2.5.4.3) of a DER certificate's subject, read with
/// a minimal DER walk: Certificate → tbsCertificate → [version], serial,
/// signature, issuer, validity, subject. `None` on anything unexpected.
pub fn subject_common_name(cert: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let (tag, cert_body, _) = der(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, mut tbs, _) = der(cert_body)?;
    if tag != 0x30 {
        return None;
    }
    // Optional explicit [0] version.
    let (tag, _, rest) = der(tbs)?;
    if tag == 0xa0 {
        tbs = rest;
    }
    // serial, signature, issuer, validity.
    for _ in 0..4 {
        tbs = der(tbs)?.2;
    }
    let (tag, mut subject, _) = der(tbs)?;
    if tag != 0x30 {
        return None;
    }
    while !subject.is_empty() {
        let (_, mut set, rest) = der(subject)?;
        subject = rest;
        while !set.is_empty() {
            let (_, attr, rest) = der(set)?;
            set = rest;
            let (tag, oid, value) = der(attr)?;
            if tag == 0x06 && oid == CN {
                let (_, text, _) = der(value)?;
                return Some(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    None
}

/// One DER element: (tag, contents, what follows).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}
