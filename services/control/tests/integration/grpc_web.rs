//! The control API over grpc-web (HTTP/1.1, no gRPC client): the same handlers, so the same
//! authentication and authorization.

use plumbline_control::{start, ControlConfig};
use plumbline_proto::v1::*;
use plumbline_runtime::ServiceArgs;
use plumbline_store::testing::TestDatabase;
use prost::Message as _;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

const OPERATOR: &str = "web-operator-token-0123456789";

/// One grpc-web unary call: (grpc-status, the response message's bytes).
async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    token: Option<&str>,
    message: &impl prost::Message,
) -> (String, Vec<u8>) {
    let payload = message.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    body.extend_from_slice(&payload);
    let mut req = http
        .post(format!("{base}/plumbline.v1.ControlService/{method}"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("grpc-web call");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    // A trailers-only answer carries the status in its headers.
    let mut status = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = resp.bytes().await.expect("body");
    let (mut rest, mut data) = (&bytes[..], Vec::new());
    while rest.len() >= 5 {
        let flag = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let frame = &rest[5..5 + len];
        if flag & 0x80 != 0 {
            let trailers = String::from_utf8_lossy(frame);
            status = trailers
                .lines()
                .find_map(|l| l.strip_prefix("grpc-status:"))
                .map(|s| s.trim().to_string());
        } else {
            data.extend_from_slice(frame);
        }
        rest = &rest[5 + len..];
    }
    (status.unwrap_or_default(), data)
}

#[tokio::test]
async fn the_api_answers_grpc_web_with_the_same_checks() {
    let db = TestDatabase::new().await;
    let kafka =
        std::env::var("PLUMB_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let shutdown = CancellationToken::new();
    let running = start(
        ControlConfig {
            auth_tokens: vec![SecretString::from(OPERATOR)],
            ..ControlConfig::local(ServiceArgs::local(&kafka, &db.url, "http://127.0.0.1:9"))
        },
        shutdown.clone(),
    )
    .await
    .expect("starts");
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("client");

    let create = CreateProjectRequest {
        project: "web".into(),
    };
    let (status, _) = call(&http, &base, "CreateProject", None, &create).await;
    assert_eq!(status, "16", "unauthenticated without a token");
    let (status, _) = call(&http, &base, "CreateProject", Some(OPERATOR), &create).await;
    assert_eq!(status, "0");
    let (status, data) = call(
        &http,
        &base,
        "ListProjects",
        Some(OPERATOR),
        &ListProjectsRequest::default(),
    )
    .await;
    assert_eq!(status, "0");
    let names: Vec<String> = ListProjectsResponse::decode(data.as_slice())
        .expect("decodes")
        .projects
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["default", "web"]);
    // The audit log saw it like any other call.
    let store = plumbline_store::Store::connect(&db.url, 1).expect("store");
    let audit = store
        .list_audit(&plumbline_store::AuditFilter {
            project: Some("web".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].rpc, "CreateProject");

    shutdown.cancel();
    let _ = running.task.await;
}

/// An open API (`plumb dev` on loopback) speaks only HTTP/2 gRPC: a web page that rebinds a
/// name to 127.0.0.1 cannot reach it as the operator.
#[tokio::test]
async fn an_open_api_does_not_answer_grpc_web() {
    let db = TestDatabase::new().await;
    let kafka =
        std::env::var("PLUMB_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let shutdown = CancellationToken::new();
    let running = start(
        ControlConfig::local(ServiceArgs::local(&kafka, &db.url, "http://127.0.0.1:9")),
        shutdown.clone(),
    )
    .await
    .expect("starts");
    let http = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("client");
    let answered = http
        .post(format!(
            "http://{}/plumbline.v1.ControlService/CreateProject",
            running.addr
        ))
        .header("content-type", "application/grpc-web+proto")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await;
    assert!(
        answered.is_err() || answered.as_ref().is_ok_and(|r| r.status() != 200),
        "{answered:?}"
    );
    let store = plumbline_store::Store::connect(&db.url, 1).expect("store");
    assert_eq!(
        store
            .list_projects(None, 1000)
            .await
            .expect("projects")
            .len(),
        1
    );
    shutdown.cancel();
    let _ = running.task.await;
}
