//! `plumb auth login`: an OIDC ID token by the device authorization grant (RFC 8628), kept in
//! the configuration file's context like any token there (mode 0600).
//!
//! The issuer's discovery document names the device and token endpoints. The command prints
//! where to go and the code to enter, then polls at the interval the issuer asks for (slowing
//! down when told to) until the person approves, refuses, or the code expires. The issuer
//! must be https (plain http only on loopback, for local identity providers and tests).

use crate::config;
use anyhow::Context as _;
use serde::Deserialize;
use std::time::Duration;

#[derive(clap::Args)]
pub struct LoginArgs {
    /// The OIDC issuer (its discovery document is read from it).
    #[arg(long)]
    issuer: String,
    /// Plumbline's client id at the issuer (the control API's `--oidc-audience`).
    #[arg(long)]
    client_id: String,
    /// The context to keep the token in (created when missing); default: the current one.
    #[arg(long = "into-context")]
    into_context: Option<String>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    device_authorization_endpoint: String,
    token_endpoint: String,
}

#[derive(Deserialize)]
struct DeviceCode {
    device_code: String,
    user_code: String,
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    expires_in: u64,
    #[serde(default = "five")]
    interval: u64,
}

fn five() -> u64 {
    5
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

fn check_url(url: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        plumbline_runtime::https_or_loopback(url),
        "{url:?} must be https (plain http only on loopback)"
    );
    Ok(())
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    check_url(&args.issuer)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let discovery: Discovery = http
        .get(format!(
            "{}/.well-known/openid-configuration",
            args.issuer.trim_end_matches('/')
        ))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
        .context("reading the issuer's discovery document")?;
    anyhow::ensure!(
        discovery.issuer == args.issuer,
        "the discovery document is issuer {:?}'s, not {:?}'s",
        discovery.issuer,
        args.issuer
    );
    check_url(&discovery.device_authorization_endpoint)?;
    check_url(&discovery.token_endpoint)?;
    let device: DeviceCode = http
        .post(&discovery.device_authorization_endpoint)
        .form(&[("client_id", args.client_id.as_str()), ("scope", "openid")])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
        .context("reading the device code")?;
    eprintln!(
        "Open {} and enter the code {}",
        device
            .verification_uri_complete
            .as_deref()
            .unwrap_or(&device.verification_uri),
        device.user_code
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(device.expires_in);
    let mut interval = Duration::from_secs(device.interval.max(1));
    let token = loop {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the code expired before it was approved"
        );
        tokio::time::sleep(interval).await;
        let answer: TokenAnswer = http
            .post(&discovery.token_endpoint)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device.device_code.as_str()),
                ("client_id", args.client_id.as_str()),
            ])
            .send()
            .await?
            .json()
            .await
            .context("reading the issuer's answer")?;
        match (answer.id_token, answer.error.as_deref()) {
            (Some(t), _) if !t.is_empty() => break t,
            (_, Some("authorization_pending")) => {}
            (_, Some("slow_down")) => interval += Duration::from_secs(5),
            (_, Some("access_denied")) => anyhow::bail!("the login was refused"),
            (_, Some("expired_token")) => anyhow::bail!("the code expired before it was approved"),
            (_, Some(other)) => anyhow::bail!("the issuer answered {other:?}"),
            (_, None) => anyhow::bail!("the issuer answered without an ID token"),
        }
    };
    let path = config::path()?;
    let mut cfg = config::load(&path)?;
    let name = args
        .into_context
        .or_else(|| cfg.current_context.clone())
        .unwrap_or_else(|| "default".to_string());
    cfg.contexts.entry(name.clone()).or_default().token = Some(token);
    if cfg.current_context.is_none() {
        cfg.current_context = Some(name.clone());
    }
    config::save(&path, &cfg)?;
    eprintln!(
        "logged in; the token is kept in context {name} ({})",
        path.display()
    );
    Ok(())
}
