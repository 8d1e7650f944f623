//! `plumb project`, `plumb token`, `plumb role` and `plumb audit`: who may do what, and what
//! they did. Each prints one line per item, words for enum values, times in RFC 3339.

use crate::client::Client;
use crate::output::{time, Output, Printer};
use crate::resources::next_page_size;
use clap::Subcommand;
use plumbline_proto::v1::*;
use serde_json::json;

#[derive(Subcommand)]
pub enum ProjectCommand {
    /// Create a project (operators only).
    Create { name: String },
    /// The projects you are a member of (every project, for an operator).
    List {
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
    /// Delete a project with every rule type, profile, repository, status and action it owns
    /// (the project's admins). The audit log keeps its records.
    Delete {
        name: String,
        /// Required: deleting cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a service account and print its token, once (operators only).
    Create {
        name: String,
        /// How long the token is valid, in seconds (default: until revoked).
        #[arg(long, default_value_t = 0)]
        ttl_seconds: u64,
    },
    /// Revoke a service account's token at once.
    Revoke { name: String },
    /// Service accounts, with when they expire or were revoked.
    List {
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
}

/// A project role, as `plumb role grant` takes it.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum RoleArg {
    Viewer,
    Editor,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Viewer => Role::Viewer,
            RoleArg::Editor => Role::Editor,
            RoleArg::Admin => Role::Admin,
        }
    }
}

#[derive(Subcommand)]
pub enum RoleCommand {
    /// Give PRINCIPAL (user:SUBJECT or serviceaccount:NAME) a role in the project.
    Grant {
        principal: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Remove PRINCIPAL from the project.
    Revoke { principal: String },
    /// The project's members.
    List {
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// The project's audit log, newest first.
    List {
        #[arg(long, default_value = "")]
        principal: String,
        /// Only calls of this RPC (e.g. ApplyProfile).
        #[arg(long, default_value = "")]
        rpc: String,
        /// At most this many records.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
}

fn role_word(r: i32) -> &'static str {
    match Role::try_from(r) {
        Ok(Role::Viewer) => "viewer",
        Ok(Role::Editor) => "editor",
        Ok(Role::Admin) => "admin",
        _ => "unknown",
    }
}

pub async fn project(c: &mut Client, command: ProjectCommand) -> anyhow::Result<()> {
    match command {
        ProjectCommand::Create { name } => {
            c.create_project(CreateProjectRequest {
                project: name.clone(),
            })
            .await?;
            println!("project {name} created");
        }
        ProjectCommand::List { output } => {
            let mut printer = Printer::new(output, &["name", "created_at", "created_by"]);
            let mut page_token = String::new();
            loop {
                let r = c
                    .list_projects(ListProjectsRequest {
                        page_size: 0,
                        page_token,
                    })
                    .await?
                    .into_inner();
                for p in r.projects {
                    printer.row(vec![
                        ("name", json!(p.name)),
                        ("created_at", time(&p.created_at)),
                        ("created_by", json!(p.created_by)),
                    ])?;
                }
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
        }
        ProjectCommand::Delete { name, yes } => {
            if !yes {
                anyhow::bail!("deleting project {name} deletes everything it owns; add --yes");
            }
            c.delete_project(DeleteProjectRequest {
                project: name.clone(),
            })
            .await?;
            println!("project {name} deleted");
        }
    }
    Ok(())
}

pub async fn token(c: &mut Client, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { name, ttl_seconds } => {
            let r = c
                .create_service_account(CreateServiceAccountRequest { name, ttl_seconds })
                .await?
                .into_inner();
            eprintln!(
                "service account {} created (expires: {}); its token is shown once:",
                r.name,
                time(&r.expires_at).as_str().unwrap_or("never")
            );
            println!("{}", r.token);
        }
        TokenCommand::Revoke { name } => {
            c.revoke_service_account(RevokeServiceAccountRequest { name: name.clone() })
                .await?;
            println!("service account {name} revoked");
        }
        TokenCommand::List { output } => {
            let mut printer = Printer::new(output, &["name", "created_at", "created_by", "state"]);
            let mut page_token = String::new();
            loop {
                let r = c
                    .list_service_accounts(ListServiceAccountsRequest {
                        page_size: 0,
                        page_token,
                    })
                    .await?
                    .into_inner();
                for a in r.service_accounts {
                    let state = if a.revoked_at.is_some() {
                        "revoked"
                    } else if a.expires_at.is_some() {
                        "expires"
                    } else {
                        "active"
                    };
                    let when = time(&a.revoked_at);
                    let when = if when.is_null() {
                        time(&a.expires_at)
                    } else {
                        when
                    };
                    let state = match when.as_str() {
                        Some(at) => format!("{state} {at}"),
                        None => state.to_string(),
                    };
                    printer.row(vec![
                        ("name", json!(a.name)),
                        ("created_at", time(&a.created_at)),
                        ("created_by", json!(a.created_by)),
                        ("state", json!(state)),
                        ("expires_at", time(&a.expires_at)),
                        ("revoked_at", time(&a.revoked_at)),
                    ])?;
                }
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
        }
    }
    Ok(())
}

pub async fn role(c: &mut Client, project: &str, command: RoleCommand) -> anyhow::Result<()> {
    match command {
        RoleCommand::Grant { principal, role } => {
            c.grant_role(GrantRoleRequest {
                project: project.to_string(),
                principal: principal.clone(),
                role: Role::from(role) as i32,
            })
            .await?;
            println!(
                "{principal} is {} in project {project}",
                role_word(Role::from(role) as i32)
            );
        }
        RoleCommand::Revoke { principal } => {
            c.revoke_role(RevokeRoleRequest {
                project: project.to_string(),
                principal: principal.clone(),
            })
            .await?;
            println!("{principal} removed from project {project}");
        }
        RoleCommand::List { output } => {
            let mut printer =
                Printer::new(output, &["principal", "role", "granted_at", "granted_by"]);
            let mut page_token = String::new();
            loop {
                let r = c
                    .list_roles(ListRolesRequest {
                        project: project.to_string(),
                        page_size: 0,
                        page_token,
                    })
                    .await?
                    .into_inner();
                for b in r.bindings {
                    printer.row(vec![
                        ("principal", json!(b.principal)),
                        ("role", json!(role_word(b.role))),
                        ("granted_at", time(&b.granted_at)),
                        ("granted_by", json!(b.granted_by)),
                    ])?;
                }
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
        }
    }
    Ok(())
}

pub async fn audit(c: &mut Client, project: &str, command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::List {
        principal,
        rpc,
        limit,
        output,
    } = command;
    let mut printer = Printer::new(
        output,
        &["at", "principal", "rpc", "outcome", "request_digest"],
    );
    let mut page_token = String::new();
    let mut shown = 0;
    loop {
        let r = c
            .list_audit(ListAuditRequest {
                project: project.to_string(),
                principal: principal.clone(),
                rpc: rpc.clone(),
                page_size: next_page_size(limit, shown),
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        for e in &r.entries {
            printer.row(vec![
                ("at", time(&e.at)),
                ("principal", json!(e.principal)),
                ("rpc", json!(e.rpc)),
                ("outcome", json!(e.outcome)),
                ("request_digest", json!(e.request_digest)),
                ("id", json!(e.id)),
                ("project", json!(e.project)),
            ])?;
        }
        shown += r.entries.len();
        if r.next_page_token.is_empty() || shown >= limit {
            return Ok(());
        }
        page_token = r.next_page_token;
    }
}

#[derive(Subcommand)]
pub enum ProviderCommand {
    /// Add a provider to the project: a GitHub App installation, or a personal access token
    /// read from standard input (stored sealed, never shown again).
    Create {
        name: String,
        #[arg(
            long,
            conflicts_with = "token_stdin",
            required_unless_present = "token_stdin"
        )]
        installation_id: Option<i64>,
        #[arg(long)]
        token_stdin: bool,
    },
    /// The project's providers (never their tokens).
    List {
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
    Delete {
        name: String,
    },
    /// Re-seal every stored token with the credentials key file's first key (operators).
    RotateKey,
}

pub async fn provider(
    c: &mut Client,
    project: &str,
    command: ProviderCommand,
) -> anyhow::Result<()> {
    match command {
        ProviderCommand::Create {
            name,
            installation_id,
            token_stdin,
        } => {
            let token = if token_stdin {
                let mut t = String::new();
                std::io::stdin().read_line(&mut t)?;
                let t = t.trim().to_string();
                anyhow::ensure!(!t.is_empty(), "no token on standard input");
                t
            } else {
                String::new()
            };
            c.create_provider(CreateProviderRequest {
                project: project.to_string(),
                name: name.clone(),
                installation_id: installation_id.unwrap_or_default(),
                token,
            })
            .await?;
            println!("provider {name} added to project {project}");
        }
        ProviderCommand::List { output } => {
            let mut printer = Printer::new(output, &["name", "kind", "credential", "created_at"]);
            let mut page_token = String::new();
            loop {
                let r = c
                    .list_providers(ListProvidersRequest {
                        project: project.to_string(),
                        page_size: 0,
                        page_token,
                    })
                    .await?
                    .into_inner();
                for p in r.providers {
                    let detail = match p.installation_id {
                        0 => format!("sealed with {}", p.key_id),
                        id => format!("installation {id}"),
                    };
                    printer.row(vec![
                        ("name", json!(p.name)),
                        ("kind", json!(p.kind)),
                        ("credential", json!(detail)),
                        ("created_at", time(&p.created_at)),
                        ("created_by", json!(p.created_by)),
                        (
                            "installation_id",
                            match p.installation_id {
                                0 => serde_json::Value::Null,
                                id => json!(id),
                            },
                        ),
                        ("key_id", json!(p.key_id)),
                    ])?;
                }
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
        }
        ProviderCommand::Delete { name } => {
            c.delete_provider(DeleteProviderRequest {
                project: project.to_string(),
                name: name.clone(),
            })
            .await?;
            println!("provider {name} deleted");
        }
        ProviderCommand::RotateKey => {
            let r = c
                .rotate_credentials_key(RotateCredentialsKeyRequest {})
                .await?
                .into_inner();
            println!("{} token(s) re-sealed with key {}", r.resealed, r.key_id);
        }
    }
    Ok(())
}
