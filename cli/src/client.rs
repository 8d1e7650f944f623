//! The control-API client used by the CLI commands.

use anyhow::Context as _;
use plumbline_proto::v1::control_service_client::ControlServiceClient;
use std::path::Path;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

pub type Client =
    ControlServiceClient<tonic::service::interceptor::InterceptedService<Channel, Auth>>;

/// Adds `authorization: Bearer TOKEN` when a token is configured.
#[derive(Clone)]
pub struct Auth(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// Connects over cleartext or TLS as the URL says, trusting the system's roots.
pub async fn connect(url: &str, token: Option<&str>) -> anyhow::Result<Client> {
    connect_with(url, token, None).await
}

/// Whether `uri` names this machine (where cleartext crosses no network).
fn is_loopback(uri: &http::Uri) -> bool {
    match uri
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
    {
        Some("localhost") => true,
        Some(h) => h
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Connects to the control API. `https://` URLs use TLS, verified against `ca_file` when given
/// (a private CA), else the system's roots. A token is never sent in cleartext to another
/// machine: an `http://` URL with a token must name a loopback address.
pub async fn connect_with(
    url: &str,
    token: Option<&str>,
    ca_file: Option<&Path>,
) -> anyhow::Result<Client> {
    let endpoint = Channel::from_shared(url.to_string())
        .with_context(|| format!("bad control url {url:?}"))?;
    let uri = endpoint.uri().clone();
    let endpoint = match uri.scheme_str() {
        Some("https") => {
            let mut tls = ClientTlsConfig::new();
            tls = match ca_file {
                Some(path) => {
                    let pem = std::fs::read(path).with_context(|| {
                        format!("reading the control API CA {}", path.display())
                    })?;
                    tls.ca_certificate(Certificate::from_pem(pem))
                }
                None => tls.with_native_roots(),
            };
            endpoint
                .tls_config(tls)
                .context("control API TLS settings")?
        }
        Some("http") => {
            anyhow::ensure!(
                token.is_none() || is_loopback(&uri),
                "refusing to send the API token in cleartext to {url}: use an https:// control URL"
            );
            anyhow::ensure!(
                ca_file.is_none(),
                "a CA file was given for the cleartext URL {url}: use https://"
            );
            endpoint
        }
        _ => {
            anyhow::bail!("control url {url:?} must start with https:// (or http:// for loopback)")
        }
    };
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach the control api at {url}"))?;
    let auth = match token {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .context("token is not valid header text")?,
        ),
        None => None,
    };
    Ok(ControlServiceClient::with_interceptor(channel, Auth(auth)))
}
