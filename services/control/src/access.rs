//! Who may call which RPC.
//!
//! Every RPC is named in [`Rpc`] with what it needs ([`Need`]); every handler starts with
//! [`Control::authorize`], which authenticates the caller, checks the need against the caller's
//! role in the request's project (deny by default), and writes the audit log: each refused call
//! and each allowed call that changes something, with the request's digest (an allowed change
//! is recorded when it is authorized, before it is carried out). A mutation whose
//! audit record cannot be written is not carried out. A test walks the service descriptor, so an
//! RPC added to the proto without a rule here fails the suite.
//!
//! Callers are the operator (a token from `--auth-token`/`--auth-token-file`, or anyone on an
//! open loopback API): every project, and the only one who creates projects and service
//! accounts; or a principal (a service account by its token) with a role per project. A
//! principal's role is read for the request's own project and no other, so one project's
//! members can neither read nor change another's.

use crate::{project_or_default, Control, ControlError};
use plumbline_domain::{Principal, Role};
use plumbline_store::AuditOutcome;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

/// What an RPC needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The operator only (projects and service accounts come into being this way).
    Operator,
    /// At least this role in the request's project.
    Role(Role),
    /// Any authenticated caller; the answer covers only what the caller may see.
    Authenticated,
}

macro_rules! rpcs {
    ($($rpc:ident => $need:expr, $mutates:expr;)*) => {
        /// Every RPC of the control service.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Rpc { $($rpc,)* }

        impl Rpc {
            pub const ALL: &'static [Rpc] = &[$(Rpc::$rpc,)*];

            /// The method's name in the proto.
            pub fn name(self) -> &'static str {
                match self { $(Rpc::$rpc => stringify!($rpc),)* }
            }

            pub fn need(self) -> Need {
                match self { $(Rpc::$rpc => $need,)* }
            }

            /// Whether it changes anything (and so is always audited).
            pub fn mutates(self) -> bool {
                match self { $(Rpc::$rpc => $mutates,)* }
            }
        }
    };
}

rpcs! {
    ApplyRuleType => Need::Role(Role::Editor), true;
    ApplyDataSource => Need::Role(Role::Editor), true;
    ApplyProfile => Need::Role(Role::Editor), true;
    RegisterRepository => Need::Role(Role::Editor), true;
    RegisterOwner => Need::Role(Role::Editor), true;
    ListRepositories => Need::Role(Role::Viewer), false;
    ListStatus => Need::Role(Role::Viewer), false;
    GetPosture => Need::Role(Role::Viewer), false;
    Reconcile => Need::Role(Role::Editor), true;
    CreateProject => Need::Operator, true;
    ListProjects => Need::Authenticated, false;
    DeleteProject => Need::Role(Role::Admin), true;
    CreateServiceAccount => Need::Operator, true;
    RevokeServiceAccount => Need::Operator, true;
    ListServiceAccounts => Need::Operator, false;
    GrantRole => Need::Role(Role::Admin), true;
    RevokeRole => Need::Role(Role::Admin), true;
    ListRoles => Need::Role(Role::Admin), false;
    ListAudit => Need::Role(Role::Admin), false;
    ListDocuments => Need::Role(Role::Viewer), false;
    GetDocument => Need::Role(Role::Viewer), false;
    DeleteDocument => Need::Role(Role::Editor), true;
    DeregisterRepository => Need::Role(Role::Editor), true;
    ListHistory => Need::Role(Role::Viewer), false;
    ListActions => Need::Role(Role::Viewer), false;
    CreateProvider => Need::Role(Role::Admin), true;
    ListProviders => Need::Role(Role::Viewer), false;
    DeleteProvider => Need::Role(Role::Admin), true;
    RotateCredentialsKey => Need::Operator, true;
}

impl std::fmt::Display for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// `token` names which operator token (the first 8 hex digits of its SHA-256), so the
    /// audit log tells operators' tokens apart without holding one; `None` on an open API.
    Operator {
        token: Option<String>,
    },
    Principal(Principal),
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Operator { token: None } => f.write_str("operator"),
            Caller::Operator { token: Some(id) } => write!(f, "operator:{id}"),
            Caller::Principal(p) => p.fmt(f),
        }
    }
}

/// The prefix of service-account tokens: recognisable in a leaked log or a secret scanner.
pub const TOKEN_PREFIX: &str = "plb_sa_";

/// A new service-account token: 32 random bytes, hex, after [`TOKEN_PREFIX`].
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn bearer(metadata: &MetadataMap) -> Option<&str> {
    metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

impl Control {
    /// Who is calling. A service-account token that is presented must be valid, open API or
    /// not; on an open (loopback) API any other caller is the operator. Every failure reads the
    /// same ("invalid bearer token"), so an answer never confirms that a token once existed;
    /// a revoked or expired service account's token is audited under its name.
    async fn authenticate(
        &self,
        metadata: &MetadataMap,
        rpc: Rpc,
        digest: &str,
    ) -> Result<Caller, Status> {
        let invalid = || Status::unauthenticated("invalid bearer token");
        let open = self.auth.is_none() && self.oidc.is_none();
        let Some(token) = bearer(metadata) else {
            return match open {
                true => Ok(Caller::Operator { token: None }),
                false => Err(Status::unauthenticated("missing bearer token")),
            };
        };
        if self.auth.as_ref().is_some_and(|a| a.accepts(token)) {
            let id = hex::encode(&token_digest(token)[..4]);
            return Ok(Caller::Operator { token: Some(id) });
        }
        if !token.starts_with(TOKEN_PREFIX) {
            if let Some(oidc) = &self.oidc {
                return match oidc.verify(token).await {
                    Ok(sub) => Ok(Caller::Principal(Principal::User(sub))),
                    Err(e) => {
                        tracing::info!(error = %e, %rpc, "OIDC token refused");
                        Err(invalid())
                    }
                };
            }
            return match open {
                true => Ok(Caller::Operator { token: None }),
                false => Err(invalid()),
            };
        }
        let account = self
            .store
            .service_account_by_digest(&token_digest(token))
            .await
            .map_err(ControlError::from)?;
        match account {
            Some(a) if a.active_at(chrono::Utc::now()) => {
                Ok(Caller::Principal(Principal::ServiceAccount(a.name)))
            }
            Some(a) => {
                let who = Principal::ServiceAccount(a.name).to_string();
                if let Err(e) = self
                    .store
                    .record_audit(&who, "", rpc.name(), digest, AuditOutcome::Unauthenticated)
                    .await
                {
                    tracing::error!(error = %e, principal = %who, "stale token use not audited");
                }
                tracing::warn!(principal = %who, %rpc, "revoked or expired service-account token presented");
                Err(invalid())
            }
            None => Err(invalid()),
        }
    }

    /// Authenticates the caller and checks that it may call `rpc` on `project` (the request's
    /// project; empty means the default one). Refusals and allowed mutations are audited.
    pub(crate) async fn authorize<M: prost::Message>(
        &self,
        req: &Request<M>,
        rpc: Rpc,
        project: &str,
    ) -> Result<Caller, Status> {
        self.authorize_for(req, rpc, rpc.need(), project).await
    }

    /// [`Control::authorize`] for a call of `rpc` that, by what it asks, needs more than the
    /// RPC's own need (`need`: never less than it).
    pub(crate) async fn authorize_for<M: prost::Message>(
        &self,
        req: &Request<M>,
        rpc: Rpc,
        need: Need,
        project: &str,
    ) -> Result<Caller, Status> {
        let digest = hex::encode(Sha256::digest(req.get_ref().encode_to_vec()));
        let caller = self.authenticate(req.metadata(), rpc, &digest).await?;
        let project = match need {
            Need::Role(_) => project_or_default(project),
            Need::Operator | Need::Authenticated => project,
        };
        // A name that cannot be a project is refused before it is looked up or audited.
        if !project.is_empty() {
            plumbline_domain::check_project_name(project)
                .map_err(|e| ControlError::InvalidArgument(e.to_string()))?;
        }
        let allowed = match (&caller, need) {
            (Caller::Operator { .. }, _) | (_, Need::Authenticated) => true,
            (Caller::Principal(_), Need::Operator) => false,
            (Caller::Principal(p), Need::Role(needed)) => {
                let role = self
                    .store
                    .role_of(project, p)
                    .await
                    .map_err(ControlError::from)?;
                role.is_some_and(|r| r >= needed)
            }
        };
        if !allowed {
            if let Err(e) = self
                .store
                .record_audit(
                    &caller.to_string(),
                    project,
                    rpc.name(),
                    &digest,
                    AuditOutcome::Denied,
                )
                .await
            {
                tracing::error!(error = %e, %caller, %rpc, project, "refused call not audited");
            }
            let why = match need {
                Need::Role(r) => format!("it needs the {r} role in project {project}"),
                _ => "only an operator may".to_string(),
            };
            return Err(Status::permission_denied(format!(
                "{caller} may not call {rpc}: {why}"
            )));
        }
        if matches!(need, Need::Role(_))
            && !self
                .store
                .project_exists(project)
                .await
                .map_err(ControlError::from)?
        {
            return Err(ControlError::NotFound(format!("project {project} does not exist")).into());
        }
        if rpc.mutates() {
            // A change that cannot be audited is not made.
            self.store
                .record_audit(
                    &caller.to_string(),
                    project,
                    rpc.name(),
                    &digest,
                    AuditOutcome::Allowed,
                )
                .await
                .map_err(ControlError::from)?;
        }
        Ok(caller)
    }
}
