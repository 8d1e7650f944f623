//! `plumb ruletype|datasource|profile list|get|delete`, `plumb repo deregister`, `plumb history
//! list` and `plumb action list`. Lists page through the server's pages, printing as they
//! arrive (see [`crate::output`]). `-o yaml` of a document is its YAML as applied (it applies
//! back unchanged); `-o json` is the same document as JSON.

use crate::client::Client;
use crate::output::{self, Output, Printer, Row};
use clap::{Subcommand, ValueEnum};
use plumbline_proto::v1::*;
use serde_json::json;

/// What to do with documents of one kind.
#[derive(Subcommand)]
pub enum DocAction {
    /// Every one in the project, in name order.
    List {
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// One, as stored.
    Get {
        name: String,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Yaml)]
        output: Output,
    },
    /// Delete it (refused while something uses it).
    Delete { name: String },
}

fn word(kind: DocumentKind) -> &'static str {
    match kind {
        DocumentKind::RuleType => "rule type",
        DocumentKind::DataSource => "data source",
        DocumentKind::Profile => "profile",
        DocumentKind::Unspecified => "document",
    }
}

/// The document in the form asked for: as applied (yaml, json), or as a row.
fn render(d: &Document, printer: &mut Printer, output: Output) -> anyhow::Result<String> {
    Ok(match output {
        Output::Yaml => d.yaml.clone(),
        Output::Json => {
            let value: serde_json::Value = serde_yaml_ng::from_str(&d.yaml)?;
            serde_json::to_string_pretty(&value)? + "\n"
        }
        Output::Table | Output::Wide => printer.render(vec![
            ("name", json!(d.name)),
            ("version", json!(d.version)),
            ("digest", json!(d.digest.get(..12).unwrap_or(&d.digest))),
            ("sha256", json!(d.digest)),
        ])?,
    })
}

const DOCUMENT_COLUMNS: &[&str] = &["name", "version", "digest"];

pub async fn documents(
    c: &mut Client,
    project: &str,
    kind: DocumentKind,
    action: DocAction,
) -> anyhow::Result<()> {
    match action {
        DocAction::List { output } => {
            let mut page_token = String::new();
            let mut first = true;
            let mut printer = Printer::new(output, DOCUMENT_COLUMNS);
            loop {
                let r = c
                    .list_documents(ListDocumentsRequest {
                        project: project.to_string(),
                        kind: kind as i32,
                        page_size: 0,
                        page_token,
                        with_yaml: matches!(output, Output::Yaml | Output::Json),
                    })
                    .await?
                    .into_inner();
                for d in &r.documents {
                    if output == Output::Yaml && !first {
                        println!("---");
                    }
                    first = false;
                    print!("{}", render(d, &mut printer, output)?);
                }
                if r.next_page_token.is_empty() {
                    return Ok(());
                }
                page_token = r.next_page_token;
            }
        }
        DocAction::Get { name, output } => {
            let d = c
                .get_document(GetDocumentRequest {
                    project: project.to_string(),
                    kind: kind as i32,
                    name,
                })
                .await?
                .into_inner();
            let mut printer = Printer::new(output, DOCUMENT_COLUMNS);
            print!("{}", render(&d, &mut printer, output)?);
        }
        DocAction::Delete { name } => {
            c.delete_document(DeleteDocumentRequest {
                project: project.to_string(),
                kind: kind as i32,
                name: name.clone(),
            })
            .await?;
            println!("{} {name} deleted", word(kind));
        }
    }
    Ok(())
}

pub async fn deregister(c: &mut Client, project: &str, entity_id: String) -> anyhow::Result<()> {
    c.deregister_repository(DeregisterRepositoryRequest {
        project: project.to_string(),
        entity_id: entity_id.clone(),
    })
    .await?;
    println!("{entity_id} deregistered; its history stays");
    Ok(())
}

/// How many rows to ask for when `shown` of `limit` are printed (pages hold at most 1,000).
pub(crate) fn next_page_size(limit: usize, shown: usize) -> u32 {
    u32::try_from(limit.saturating_sub(shown).min(1000)).unwrap_or(1000)
}

#[derive(Subcommand)]
pub enum HistoryCommand {
    /// Evaluations, newest first.
    List {
        /// Only this entity (id as shown by `plumb repo list`).
        #[arg(long, default_value = "")]
        entity: String,
        #[arg(long, default_value = "")]
        profile: String,
        /// Only this rule (its name in the profile).
        #[arg(long, default_value = "")]
        rule: String,
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
}

#[derive(Subcommand)]
pub enum ActionCommand {
    /// Remediations and alerts, newest first: what was changed, its outcome and reference.
    List {
        #[arg(long, default_value = "")]
        entity: String,
        #[arg(long, default_value = "")]
        profile: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
}

/// `--status` of `plumb history list`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StatusArg {
    Pass,
    Fail,
    Skipped,
    Error,
}

pub async fn history(
    c: &mut Client,
    project: &str,
    mut filter: ListHistoryRequest,
    status: Option<StatusArg>,
    limit: usize,
    output: Output,
) -> anyhow::Result<()> {
    let mut printer = Printer::new(
        output,
        &["evaluated_at", "entity_id", "rule", "status", "message"],
    );
    filter.project = project.to_string();
    filter.status = match status {
        None => 0,
        Some(StatusArg::Pass) => EvalStatus::Pass as i32,
        Some(StatusArg::Fail) => EvalStatus::Fail as i32,
        Some(StatusArg::Skipped) => EvalStatus::Skipped as i32,
        Some(StatusArg::Error) => EvalStatus::Error as i32,
    };
    let mut shown = 0;
    loop {
        filter.page_size = next_page_size(limit, shown);
        let r = c.list_history(filter.clone()).await?.into_inner();
        for e in &r.entries {
            printer.row(history_row(e))?;
        }
        shown += r.entries.len();
        if r.next_page_token.is_empty() || shown >= limit {
            return Ok(());
        }
        filter.page_token = r.next_page_token;
    }
}

pub async fn actions(
    c: &mut Client,
    project: &str,
    mut filter: ListActionsRequest,
    limit: usize,
    output: Output,
) -> anyhow::Result<()> {
    let mut printer = Printer::new(
        output,
        &[
            "created_at",
            "entity_id",
            "profile",
            "type",
            "status",
            "provider_ref",
            "message",
        ],
    );
    filter.project = project.to_string();
    let mut shown = 0;
    loop {
        filter.page_size = next_page_size(limit, shown);
        let r = c.list_actions(filter.clone()).await?.into_inner();
        for a in &r.actions {
            printer.row(action_row(a))?;
        }
        shown += r.actions.len();
        if r.next_page_token.is_empty() || shown >= limit {
            return Ok(());
        }
        filter.page_token = r.next_page_token;
    }
}

fn history_row(e: &HistoryEntry) -> Row {
    vec![
        ("evaluated_at", output::time(&e.evaluated_at)),
        ("entity_id", json!(e.entity_id)),
        ("rule", json!(format!("{}/{}", e.profile, e.rule_name))),
        ("status", json!(plumbline_proto::eval_status_word(e.status))),
        ("message", json!(e.message)),
        ("profile", json!(e.profile)),
        ("rule_name", json!(e.rule_name)),
        ("rule_type", json!(e.rule_type)),
        ("evaluation_id", json!(e.evaluation_id)),
    ]
}

fn action_row(a: &Action) -> Row {
    let requests: Vec<String> = a
        .requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.url))
        .collect();
    vec![
        ("created_at", output::time(&a.created_at)),
        ("entity_id", json!(a.entity_id)),
        ("profile", json!(a.profile)),
        ("type", json!(a.action_type)),
        (
            "status",
            json!(plumbline_proto::action_status_word(a.status)),
        ),
        ("provider_ref", json!(a.provider_ref)),
        ("message", json!(a.message)),
        ("id", json!(a.id)),
        (
            "kind",
            json!(ActionKind::try_from(a.kind)
                .map(|k| k
                    .as_str_name()
                    .trim_start_matches("ACTION_KIND_")
                    .to_ascii_lowercase())
                .unwrap_or_default()),
        ),
        ("rule_type", json!(a.rule_type)),
        ("evaluation_id", json!(a.evaluation_id)),
        ("updated_at", output::time(&a.updated_at)),
        ("requests", json!(requests)),
    ]
}
