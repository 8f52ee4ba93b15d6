//! The subject CN of an X.509 certificate, read from its DER: what `--tls-cert-user` logs a
//! connection in as.
//!
//! Only called on a certificate webpki has already verified, but read as untrusted bytes all
//! the same: every length is checked against what is left, nothing panics. The walk follows
//! RFC 5280: `Certificate ::= SEQUENCE { tbsCertificate, ... }`, `TBSCertificate ::=
//! SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer, validity, subject, ... }`,
//! `Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }`. A certificate with more than
//! one CN is refused (which user would it be?), as is a CN that is not a string type.

/// The OID 2.5.4.3 (commonName), DER-encoded.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xA0;

/// One DER element: its tag and contents, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    // High tag numbers (0x1F) never occur in the fields read here.
    if tag & 0x1F == 0x1F {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let bytes = (first & 0x7F) as usize;
        if bytes == 0 || bytes > 4 || rest.len() < bytes {
            return None;
        }
        let len = rest[..bytes]
            .iter()
            .fold(0usize, |n, &b| (n << 8) | b as usize);
        (len, &rest[bytes..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The contents of an element that must have `tag`, and what follows it.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match element(input)? {
        (t, contents, rest) if t == tag => Some((contents, rest)),
        _ => None,
    }
}

/// The subject CN as text, or why there is none.
pub fn subject_common_name(der: &[u8]) -> Result<String, &'static str> {
    const MALFORMED: &str = "the certificate is not valid DER";
    let (cert, _) = expect(der, SEQUENCE).ok_or(MALFORMED)?;
    let (mut tbs, _) = expect(cert, SEQUENCE).ok_or(MALFORMED)?;
    if tbs.first() == Some(&VERSION) {
        tbs = expect(tbs, VERSION).ok_or(MALFORMED)?.1;
    }
    let (_serial, tbs) = expect(tbs, INTEGER).ok_or(MALFORMED)?;
    let (_signature, tbs) = expect(tbs, SEQUENCE).ok_or(MALFORMED)?;
    let (_issuer, tbs) = expect(tbs, SEQUENCE).ok_or(MALFORMED)?;
    let (_validity, tbs) = expect(tbs, SEQUENCE).ok_or(MALFORMED)?;
    let (mut subject, _) = expect(tbs, SEQUENCE).ok_or(MALFORMED)?;
    let mut found: Option<String> = None;
    while !subject.is_empty() {
        let (mut rdn, rest) = expect(subject, SET).ok_or(MALFORMED)?;
        subject = rest;
        while !rdn.is_empty() {
            let (attribute, rest) = expect(rdn, SEQUENCE).ok_or(MALFORMED)?;
            rdn = rest;
            let (oid, value) = expect(attribute, OID).ok_or(MALFORMED)?;
            if oid != COMMON_NAME {
                continue;
            }
            let (tag, text, _) = element(value).ok_or(MALFORMED)?;
            // UTF8String, PrintableString, IA5String, TeletexString (Latin-1 in practice,
            // accepted when it is ASCII, as the bytes are then the same).
            let text = match tag {
                0x0C | 0x13 | 0x16 | 0x14 => {
                    std::str::from_utf8(text).map_err(|_| "the subject CN is not UTF-8")?
                }
                _ => return Err("the subject CN is not a string type GoKV reads"),
            };
            if found.is_some() {
                return Err("the subject has more than one CN");
            }
            found = Some(text.to_string());
        }
    }
    found.ok_or("the subject has no CN")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    /// Made with `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
    /// -subj "/O=GoKV test/CN=app-service" -days 3650`.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBqjCCAU+gAwIBAgIUXJIElPB+EgAHyu/no6bVdVJGPX8wCgYIKoZIzj0EAwIw
KjESMBAGA1UECgwJR29LViB0ZXN0MRQwEgYDVQQDDAthcHAtc2VydmljZTAeFw0y
NjEyMDExNzM4MThaFw0zNjExMjgxNzM4MThaMCoxEjAQBgNVBAoMCUdvS1YgdGVz
dDEUMBIGA1UEAwwLYXBwLXNlcnZpY2UwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AARhGq2UDXGXD2T5a3biz4Q+/4yce8nFy1rBKfcp2qtcYtXRz3mHznq0dfH05ZCj
4mFin2g87oeWtfY9VP/vnyKfo1MwUTAdBgNVHQ4EFgQUKGbT5BYXAmShhp9X40EG
aGZvBlswHwYDVR0jBBgwFoAUKGbT5BYXAmShhp9X40EGaGZvBlswDwYDVR0TAQH/
BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEAh/MlueMCT24ZZ5IGWkPmc86Bs+1T
nw9HetEydrSfXG8CIQCUH5+Q4kj2dR6cwXz8w3S9LUWfQyprx4AOB5GXAa8RQA==
-----END CERTIFICATE-----";

    fn der() -> Vec<u8> {
        CertificateDer::from_pem_slice(CERT.as_bytes())
            .expect("test certificate is PEM")
            .to_vec()
    }

    #[test]
    fn reads_the_subject_cn() {
        assert_eq!(subject_common_name(&der()).as_deref(), Ok("app-service"));
    }

    #[test]
    fn garbage_and_cut_certificates_are_errors_not_panics() {
        let der = der();
        for cut in 0..der.len() {
            let _ = subject_common_name(&der[..cut]);
        }
        let mut flipped = der.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xFF;
            let _ = subject_common_name(&flipped);
            flipped[i] ^= 0xFF;
        }
        assert!(subject_common_name(b"").is_err());
        assert!(subject_common_name(&[0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF]).is_err());
    }
}
