//! Who signed: the Fulcio identity read from a signing certificate.
//!
//! Fulcio writes the OIDC token's claims into custom X.509 extensions under
//! `1.3.6.1.4.1.57264.1` (see Fulcio's `docs/oid-info.md`); the subject (workflow) is the SAN.
//! The caller's policy compares these strings; this module only reads them.

use x509_cert::der::asn1::Utf8StringRef;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

/// The identity a verified certificate was issued to.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertificateSummary {
    /// OIDC issuer (`.1.8`, else the deprecated `.1.1`).
    pub issuer: Option<String>,
    /// SAN: a URI (workflow identity) or an e-mail address.
    pub subject_alternative_name: Option<String>,
    /// `.1.12`, e.g. `https://github.com/owner/repo`.
    pub source_repository_uri: Option<String>,
    /// `.1.14`, e.g. `refs/heads/main`.
    pub source_repository_ref: Option<String>,
    /// `.1.11`, `github-hosted` or `self-hosted`.
    pub runner_environment: Option<String>,
    /// `.1.9`, the workflow that signed, `https://github.com/o/r/.github/workflows/x.yml@ref`.
    pub build_signer_uri: Option<String>,
    /// `.1.18`, the top-level workflow of the run (differs from the signer for a reusable
    /// workflow), `https://github.com/o/r/.github/workflows/x.yml@ref`.
    pub build_config_uri: Option<String>,
    /// `.1.20`, the event that started the run (`push`, `workflow_dispatch`...).
    pub build_trigger: Option<String>,
}

const ISSUER_V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
const ISSUER_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
const BUILD_SIGNER_URI: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.9");
const BUILD_CONFIG_URI: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.18");
const BUILD_TRIGGER: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.20");
const RUNNER_ENVIRONMENT: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.11");
const SOURCE_REPOSITORY_URI: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.12");
const SOURCE_REPOSITORY_REF: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.14");

/// Reads the identity from a (parsed) leaf certificate.
pub(crate) fn summarize(cert: &Certificate) -> CertificateSummary {
    let tbs = cert.tbs_certificate();
    let ext = |oid: ObjectIdentifier, der_string: bool| -> Option<String> {
        let e = tbs.extensions()?.iter().find(|e| e.extn_id == oid)?;
        let raw = e.extn_value.as_bytes();
        if der_string {
            Utf8StringRef::from_der(raw)
                .ok()
                .map(|s| s.as_str().to_string())
        } else {
            std::str::from_utf8(raw).ok().map(str::to_string)
        }
    };
    let san = match tbs.get_extension::<SubjectAltName>() {
        Ok(Some((_, san))) => san.0.iter().find_map(|n| match n {
            GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
            GeneralName::Rfc822Name(m) => Some(m.to_string()),
            _ => None,
        }),
        _ => None,
    };
    CertificateSummary {
        issuer: ext(ISSUER_V2, true).or_else(|| ext(ISSUER_V1, false)),
        subject_alternative_name: san,
        source_repository_uri: ext(SOURCE_REPOSITORY_URI, true),
        source_repository_ref: ext(SOURCE_REPOSITORY_REF, true),
        runner_environment: ext(RUNNER_ENVIRONMENT, true),
        build_signer_uri: ext(BUILD_SIGNER_URI, true),
        build_config_uri: ext(BUILD_CONFIG_URI, true),
        build_trigger: ext(BUILD_TRIGGER, true),
    }
}
