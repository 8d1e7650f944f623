//! Who may call what: projects, service accounts, roles and the audit log, through the real
//! control service over gRPC and Postgres.
//!
//! The per-RPC checks are generated from the service descriptor: every method is called raw,
//! with a message holding only the project when it has one, as an outsider, a viewer and an
//! editor. A method added to the proto is covered (and must have a rule in `Rpc`) without
//! touching this file.

use crate::common;

use bytes::{Buf, BufMut};
use plumbline_control::{ControlConfig, Need, Rpc};
use plumbline_proto::v1::control_service_client::ControlServiceClient;
use plumbline_proto::v1::*;
use plumbline_store::testing::TestDatabase;
use prost::Message as _;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

const OPERATOR: &str = "operator-token-0123456789abcdef";

/// The control service's methods and, for each, the field number of `project` in its request
/// (if it has one).
fn methods() -> Vec<(String, Option<i32>)> {
    let fds = prost_types::FileDescriptorSet::decode(plumbline_proto::FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    let file = fds
        .file
        .iter()
        .find(|f| f.service.iter().any(|s| s.name() == "ControlService"))
        .expect("the control service");
    let service = file
        .service
        .iter()
        .find(|s| s.name() == "ControlService")
        .expect("service");
    service
        .method
        .iter()
        .map(|m| {
            let input = m.input_type().rsplit('.').next().unwrap_or_default();
            let message = file
                .message_type
                .iter()
                .find(|t| t.name() == input)
                .expect("request message");
            let project = message
                .field
                .iter()
                .find(|f| f.name() == "project")
                .map(|f| f.number());
            (m.name().to_string(), project)
        })
        .collect()
}

#[test]
fn every_rpc_of_the_descriptor_has_an_authorization_rule() {
    let described: BTreeSet<String> = methods().into_iter().map(|(m, _)| m).collect();
    let ruled: BTreeSet<String> = Rpc::ALL.iter().map(|r| r.name().to_string()).collect();
    assert_eq!(
        described, ruled,
        "every RPC needs a rule in Rpc, and only RPCs"
    );
    // Every RPC scoped by a role says which project in its request.
    for (name, project) in methods() {
        let rpc = Rpc::ALL.iter().find(|r| r.name() == name).expect("rule");
        if matches!(rpc.need(), Need::Role(_)) {
            assert!(
                project.is_some(),
                "{name} needs a role but names no project"
            );
        }
    }
}

/// A request message holding only `project` (field `number`), as the wire has it.
fn raw_request(project: Option<(i32, &str)>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some((number, value)) = project {
        prost::encoding::string::encode(number as u32, &value.to_string(), &mut out);
    }
    out
}

#[derive(Clone, Default)]
struct Raw;
struct RawEncoder;
struct RawDecoder;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Calls `method` with raw bytes as `token`.
async fn call_raw(
    channel: &Channel,
    token: &str,
    method: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path: tonic::codegen::http::uri::PathAndQuery =
        format!("/plumbline.v1.ControlService/{method}")
            .parse()
            .expect("path");
    let mut req = tonic::Request::new(body);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    grpc.unary(req, path, Raw).await.map(|r| r.into_inner())
}

/// Sends a bearer token with every call.
#[derive(Clone)]
struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

type Client =
    ControlServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

fn client(channel: &Channel, token: &str) -> Client {
    let header = format!("Bearer {token}").parse().expect("header");
    ControlServiceClient::with_interceptor(channel.clone(), Bearer(header))
}

async fn service_account(operator: &mut Client, name: &str) -> String {
    operator
        .create_service_account(CreateServiceAccountRequest {
            name: name.into(),
            ttl_seconds: 0,
        })
        .await
        .expect("service account")
        .into_inner()
        .token
}

async fn grant(operator: &mut Client, project: &str, account: &str, role: Role) {
    operator
        .grant_role(GrantRoleRequest {
            project: project.into(),
            principal: format!("serviceaccount:{account}"),
            role: role as i32,
        })
        .await
        .expect("grant");
}

#[tokio::test]
async fn roles_keep_projects_apart_and_every_decision_is_audited() {
    let db = TestDatabase::new().await;
    let served = common::Served::start(ControlConfig {
        auth_tokens: vec![SecretString::from(OPERATOR)],
        ..common::local(&db.url)
    })
    .await;
    let channel = served.channel.clone();
    let mut op = client(&channel, OPERATOR);
    for p in ["alpha", "beta"] {
        op.create_project(CreateProjectRequest { project: p.into() })
            .await
            .expect("project");
    }
    let bad = op
        .create_project(CreateProjectRequest {
            project: "Bad/Name".into(),
        })
        .await
        .expect_err("malformed name");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let dup = op
        .create_project(CreateProjectRequest {
            project: "alpha".into(),
        })
        .await
        .expect_err("taken");
    assert_eq!(dup.code(), Code::AlreadyExists);

    let admin = service_account(&mut op, "alpha-admin").await;
    let editor = service_account(&mut op, "alpha-editor").await;
    let viewer = service_account(&mut op, "alpha-viewer").await;
    let outsider = service_account(&mut op, "beta-admin").await;
    assert!(admin.starts_with("plb_sa_") && admin.len() > 60);
    grant(&mut op, "alpha", "alpha-admin", Role::Admin).await;
    grant(&mut op, "alpha", "alpha-editor", Role::Editor).await;
    grant(&mut op, "alpha", "alpha-viewer", Role::Viewer).await;
    grant(&mut op, "beta", "beta-admin", Role::Admin).await;

    // Every RPC, raw, aimed at project alpha.
    for (method, project_field) in methods() {
        let rpc = *Rpc::ALL.iter().find(|r| r.name() == method).expect("rule");
        let body = raw_request(project_field.map(|n| (n, "alpha")));
        for (token, who, allowed) in [
            (&outsider, "outsider", false),
            (
                &viewer,
                "viewer",
                rpc.need() == Need::Role(plumbline_domain::Role::Viewer),
            ),
            (
                &editor,
                "editor",
                matches!(
                    rpc.need(),
                    Need::Role(plumbline_domain::Role::Viewer | plumbline_domain::Role::Editor)
                ),
            ),
        ] {
            let result = call_raw(&channel, token, &method, body.clone()).await;
            match rpc.need() {
                Need::Authenticated => {
                    // Answered, but only with what the caller may see.
                    let listed =
                        ListProjectsResponse::decode(result.expect("list projects").as_slice())
                            .expect("decodes");
                    let names: Vec<String> = listed.projects.into_iter().map(|p| p.name).collect();
                    let expected = if who == "outsider" { "beta" } else { "alpha" };
                    assert_eq!(names, vec![expected.to_string()], "{who}");
                }
                _ if allowed => {
                    if let Err(status) = &result {
                        assert_ne!(
                            status.code(),
                            Code::PermissionDenied,
                            "{who} may call {method}: {status:?}"
                        );
                        assert_ne!(status.code(), Code::Unauthenticated, "{who} {method}");
                    }
                }
                _ => {
                    let status = result.expect_err("refused");
                    assert_eq!(
                        status.code(),
                        Code::PermissionDenied,
                        "{who} must not call {method}: {status:?}"
                    );
                }
            }
        }
    }

    // An editor cannot grant roles; a viewer cannot apply; both are refused by name.
    let refused = client(&channel, &editor)
        .grant_role(GrantRoleRequest {
            project: "alpha".into(),
            principal: "serviceaccount:alpha-editor".into(),
            role: Role::Admin as i32,
        })
        .await
        .expect_err("editor grants");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("serviceaccount:alpha-editor")
            && refused.message().contains("admin"),
        "{}",
        refused.message()
    );

    // A project that does not exist: the operator is told so, a member of another project is
    // refused exactly as for one that exists.
    let missing = op
        .list_repositories(ListRepositoriesRequest {
            project: "nope".into(),
            ..Default::default()
        })
        .await
        .expect_err("no such project");
    assert_eq!(missing.code(), Code::NotFound);
    let hidden = client(&channel, &outsider)
        .list_repositories(ListRepositoriesRequest {
            project: "nope".into(),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(hidden.code(), Code::PermissionDenied);

    // The audit log holds each refusal and each allowed change, with the request's digest.
    let denied_body = raw_request(Some((1, "alpha")));
    let _ = call_raw(&channel, &viewer, "ApplyRuleType", denied_body.clone()).await;
    let audit = client(&channel, &admin)
        .list_audit(ListAuditRequest {
            project: "alpha".into(),
            principal: "serviceaccount:alpha-viewer".into(),
            rpc: "ApplyRuleType".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner();
    let last = &audit.entries[0];
    assert_eq!(
        (last.outcome.as_str(), last.project.as_str()),
        ("denied", "alpha")
    );
    assert_eq!(
        last.request_digest,
        hex::encode(Sha256::digest(&denied_body))
    );
    assert!(
        !audit.next_page_token.is_empty(),
        "more than one such refusal"
    );
    let grants = client(&channel, &admin)
        .list_audit(ListAuditRequest {
            project: "alpha".into(),
            rpc: "GrantRole".into(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner();
    assert!(
        grants
            .entries
            .iter()
            .filter(|e| e.outcome == "allowed" && e.principal.starts_with("operator:"))
            .count()
            >= 3,
        "{:?}",
        grants.entries
    );

    // A service token works until revoked, and not after it expired.
    let mut beta = client(&channel, &outsider);
    beta.list_repositories(ListRepositoriesRequest {
        project: "beta".into(),
        ..Default::default()
    })
    .await
    .expect("member");
    op.revoke_service_account(RevokeServiceAccountRequest {
        name: "beta-admin".into(),
    })
    .await
    .expect("revoke");
    let revoked = beta
        .list_repositories(ListRepositoriesRequest {
            project: "beta".into(),
            ..Default::default()
        })
        .await
        .expect_err("revoked");
    assert_eq!(revoked.code(), Code::Unauthenticated);
    assert_eq!(
        revoked.message(),
        "invalid bearer token",
        "nothing says it once existed"
    );
    db.batch("UPDATE service_accounts SET expires_at = now() - interval '1 second' WHERE name = 'alpha-viewer'")
        .await;
    let expired = client(&channel, &viewer)
        .list_repositories(ListRepositoriesRequest {
            project: "alpha".into(),
            ..Default::default()
        })
        .await
        .expect_err("expired");
    assert_eq!(expired.code(), Code::Unauthenticated);
    let forged = client(
        &channel,
        "plb_sa_0000000000000000000000000000000000000000000000000000000000000000",
    )
    .list_projects(ListProjectsRequest::default())
    .await
    .expect_err("unknown token");
    assert_eq!(forged.code(), Code::Unauthenticated);
    // A project name that cannot be one is refused before it is looked up or audited.
    let long = "x".repeat(100_000);
    let refused = client(&channel, &outsider)
        .list_repositories(ListRepositoriesRequest {
            project: long,
            ..Default::default()
        })
        .await
        .expect_err("not a name");
    assert_eq!(
        refused.code(),
        Code::Unauthenticated,
        "the revoked token fails first"
    );
    let malformed = op
        .list_repositories(ListRepositoriesRequest {
            project: "x".repeat(100_000),
            ..Default::default()
        })
        .await
        .expect_err("not a name");
    assert_eq!(malformed.code(), Code::InvalidArgument);
    let accounts = op
        .list_service_accounts(ListServiceAccountsRequest::default())
        .await
        .expect("accounts")
        .into_inner()
        .service_accounts;
    assert_eq!(accounts.len(), 4);
    // Paged server-side, in name order.
    let first = op
        .list_service_accounts(ListServiceAccountsRequest {
            page_size: 3,
            page_token: String::new(),
        })
        .await
        .expect("page 1")
        .into_inner();
    let rest = op
        .list_service_accounts(ListServiceAccountsRequest {
            page_size: 3,
            page_token: first.next_page_token.clone(),
        })
        .await
        .expect("page 2")
        .into_inner();
    let names: Vec<String> = first
        .service_accounts
        .iter()
        .chain(&rest.service_accounts)
        .map(|a| a.name.clone())
        .collect();
    assert_eq!(
        names,
        ["alpha-admin", "alpha-editor", "alpha-viewer", "beta-admin"]
    );
    assert!(rest.next_page_token.is_empty());
    assert!(accounts
        .iter()
        .any(|a| a.name == "beta-admin" && a.revoked_at.is_some()));

    // Roles are listed and revoked by the project's admin.
    let roles = client(&channel, &admin)
        .list_roles(ListRolesRequest {
            project: "alpha".into(),
            ..Default::default()
        })
        .await
        .expect("roles")
        .into_inner()
        .bindings;
    assert_eq!(roles.len(), 3);
    client(&channel, &admin)
        .revoke_role(RevokeRoleRequest {
            project: "alpha".into(),
            principal: "serviceaccount:alpha-editor".into(),
        })
        .await
        .expect("revoke role");
    let gone = client(&channel, &editor)
        .list_repositories(ListRepositoriesRequest {
            project: "alpha".into(),
            ..Default::default()
        })
        .await
        .expect_err("no longer a member");
    assert_eq!(gone.code(), Code::PermissionDenied);

    // The default project cannot be deleted; alpha's admin deletes alpha with what it owns,
    // and the audit log outlives it.
    let default = op
        .delete_project(DeleteProjectRequest {
            project: "default".into(),
        })
        .await
        .expect_err("default");
    assert_eq!(default.code(), Code::FailedPrecondition);
    client(&channel, &admin)
        .delete_project(DeleteProjectRequest {
            project: "alpha".into(),
        })
        .await
        .expect("delete");
    let projects: Vec<String> = op
        .list_projects(ListProjectsRequest::default())
        .await
        .expect("projects")
        .into_inner()
        .projects
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(projects, vec!["beta", "default"]);
    let store = plumbline_store::Store::connect(&db.url, 1).expect("store");
    let kept = store
        .list_audit(&plumbline_store::AuditFilter {
            project: Some("alpha".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert!(kept.iter().any(|e| e.rpc == "DeleteProject"));
    assert!(kept.iter().all(|e| e.project.len() < 64));
    // The revoked and the expired token were each audited under their account's name.
    let stale = store
        .list_audit(&plumbline_store::AuditFilter {
            project: Some(String::new()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("audit");
    let stale: BTreeSet<&str> = stale
        .iter()
        .filter(|e| e.outcome == plumbline_store::AuditOutcome::Unauthenticated)
        .map(|e| e.principal.as_str())
        .collect();
    assert_eq!(
        stale,
        BTreeSet::from(["serviceaccount:alpha-viewer", "serviceaccount:beta-admin"])
    );
    assert!(store
        .list_roles("alpha", None, 1000)
        .await
        .expect("roles")
        .is_empty());

    served.stop().await;
}
