//! The control-API client used by the CLI commands.

use anyhow::Context as _;
use plumbline_proto::v1::control_service_client::ControlServiceClient;
use tonic::transport::Channel;

pub type Client = ControlServiceClient<tonic::service::interceptor::InterceptedService<Channel, Auth>>;

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

pub async fn connect(url: &str, token: Option<&str>) -> anyhow::Result<Client> {
    let channel = Channel::from_shared(url.to_string())
        .with_context(|| format!("bad control url {url:?}"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach the control api at {url}"))?;
    let auth = match token {
        Some(t) => Some(format!("Bearer {t}").parse().context("token is not valid header text")?),
        None => None,
    };
    Ok(ControlServiceClient::with_interceptor(channel, Auth(auth)))
}
