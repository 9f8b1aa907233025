//! `gatehouse ca export`: the CA certificate for devices to trust, as PEM,
//! DER, an Apple configuration profile, or a certificate-only PKCS#12. The
//! key is never exported.

use std::fmt;
use std::str::FromStr;

use plist::{Dictionary, Value};
use uuid::Uuid;

use crate::describe::hex;
use crate::mint::sha256;
use crate::validate::parse_cert;
use crate::{Ca, CaCert, CertError};

/// The forms the CA certificate can be exported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportFormat {
    /// PEM text.
    Pem,
    /// Raw DER (`.cer`/`.crt` for Android and Windows).
    Der,
    /// An Apple configuration profile (`.mobileconfig`, iOS and macOS).
    MobileConfig,
    /// PKCS#12 (`.p12`) holding the certificate only, no key, empty
    /// password (Windows, macOS, Android certificate installers).
    P12,
}

impl ExportFormat {
    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Pem => "pem",
            Self::Der => "cer",
            Self::MobileConfig => "mobileconfig",
            Self::P12 => "p12",
        }
    }
}

impl FromStr for ExportFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pem" => Ok(Self::Pem),
            "der" | "cer" => Ok(Self::Der),
            "mobileconfig" => Ok(Self::MobileConfig),
            "p12" | "pfx" => Ok(Self::P12),
            _ => Err(format!(
                "unknown export format {s:?}; expected pem, der (or cer), mobileconfig or p12"
            )),
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pem => "pem",
            Self::Der => "der",
            Self::MobileConfig => "mobileconfig",
            Self::P12 => "p12",
        })
    }
}

/// Namespace for the profile's name-based (v5) UUIDs: the same certificate
/// always yields the same UUIDs, so re-installing replaces, not duplicates.
const PROFILE_NAMESPACE: Uuid = Uuid::from_u128(0x6761_7465_686f_7573_6500_0000_0000_0001);

/// The organisation the certificate names in its subject, unless it is the
/// product name a created CA carries (`O=Gatehouse`), which names no one.
fn cert_organization(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_organization()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::trim)
        .filter(|o| !o.is_empty() && *o != "Gatehouse")
        .map(str::to_string)
}

impl Ca {
    /// The CA certificate (only the certificate, never the key) in `format`.
    pub fn export(&self, format: ExportFormat) -> Result<Vec<u8>, CertError> {
        self.certificate().export(format, None)
    }
}

impl CaCert {
    /// The CA certificate in `format`. `organization` (the `ca.organization`
    /// setting) names who runs the gateway in the profile's texts; when it
    /// is `None` or empty, the certificate's O is used, else no
    /// organisation is named.
    pub fn export(
        &self,
        format: ExportFormat,
        organization: Option<&str>,
    ) -> Result<Vec<u8>, CertError> {
        match format {
            ExportFormat::Pem => Ok(self.cert_pem().as_bytes().to_vec()),
            ExportFormat::Der => Ok(self.cert_der().to_vec()),
            ExportFormat::MobileConfig => self.mobileconfig(organization),
            ExportFormat::P12 => Ok(crate::p12::cert_only(self.cert_der().as_ref())),
        }
    }

    fn mobileconfig(&self, organization: Option<&str>) -> Result<Vec<u8>, CertError> {
        let der = self.cert_der().as_ref();
        let cert = parse_cert(der)?;
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or("Gatehouse Interception CA")
            .to_string();
        let org = organization
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .or_else(|| cert_organization(&cert));
        let fp = hex(&sha256(der), "").to_ascii_lowercase();
        let identifier = format!("com.gatehouse.ca.{}", &fp[..16]);
        let uuid = |role: &str| {
            Uuid::new_v5(&PROFILE_NAMESPACE, format!("{role}:{fp}").as_bytes())
                .hyphenated()
                .to_string()
                .to_uppercase()
        };

        let mut payload = Dictionary::new();
        payload.insert(
            "PayloadCertificateFileName".into(),
            Value::String("gatehouse-ca.cer".into()),
        );
        payload.insert("PayloadContent".into(), Value::Data(der.to_vec()));
        payload.insert(
            "PayloadDescription".into(),
            Value::String(match &org {
                Some(org) => format!("Adds {org}'s interception CA certificate as a trusted root."),
                None => "Adds the interception CA certificate as a trusted root.".into(),
            }),
        );
        payload.insert("PayloadDisplayName".into(), Value::String(cn.clone()));
        payload.insert(
            "PayloadIdentifier".into(),
            Value::String(format!("{identifier}.cert")),
        );
        payload.insert(
            "PayloadType".into(),
            Value::String("com.apple.security.root".into()),
        );
        payload.insert("PayloadUUID".into(), Value::String(uuid("cert")));
        payload.insert("PayloadVersion".into(), Value::Integer(1.into()));

        let mut profile = Dictionary::new();
        profile.insert(
            "PayloadContent".into(),
            Value::Array(vec![Value::Dictionary(payload)]),
        );
        profile.insert(
            "PayloadDescription".into(),
            Value::String(match &org {
                Some(org) => format!(
                    "Lets {org}'s Gatehouse gateway inspect TLS traffic on the corporate \
                     network by trusting its interception CA ({cn})."
                ),
                None => format!(
                    "Lets the Gatehouse gateway inspect TLS traffic on this network by \
                     trusting its interception CA ({cn})."
                ),
            }),
        );
        profile.insert("PayloadDisplayName".into(), Value::String(cn));
        profile.insert("PayloadIdentifier".into(), Value::String(identifier));
        if let Some(org) = org {
            profile.insert("PayloadOrganization".into(), Value::String(org));
        }
        profile.insert("PayloadRemovalDisallowed".into(), Value::Boolean(false));
        profile.insert("PayloadType".into(), Value::String("Configuration".into()));
        profile.insert("PayloadUUID".into(), Value::String(uuid("profile")));
        profile.insert("PayloadVersion".into(), Value::Integer(1.into()));

        let mut out = Vec::new();
        Value::Dictionary(profile)
            .to_writer_xml(&mut out)
            .map_err(|e| CertError::Export(e.to_string()))?;
        Ok(out)
    }
}
