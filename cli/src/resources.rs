//! `plumb ruletype|datasource|profile list|get|delete`, `plumb repo deregister`, `plumb history
//! list` and `plumb action list`. Lists page through the server's pages, printing as they
//! arrive. `-o yaml` of a document is its YAML as applied (it applies back unchanged);
//! `-o json` is the same document as JSON.

use crate::client::Client;
use clap::{Subcommand, ValueEnum};
use plumbline_proto::v1::*;

/// How to print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Tab-separated columns, one line per item.
    #[default]
    Table,
    Yaml,
    Json,
}

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

/// The document in the form asked for.
fn render(d: &Document, output: Output) -> anyhow::Result<String> {
    Ok(match output {
        Output::Yaml => d.yaml.clone(),
        Output::Json => {
            let value: serde_json::Value = serde_yaml_ng::from_str(&d.yaml)?;
            serde_json::to_string_pretty(&value)? + "\n"
        }
        Output::Table => format!(
            "{}\t{}\t{}\n",
            d.name,
            d.version,
            d.digest.get(..12).unwrap_or(&d.digest)
        ),
    })
}

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
            loop {
                let r = c
                    .list_documents(ListDocumentsRequest {
                        project: project.to_string(),
                        kind: kind as i32,
                        page_size: 0,
                        page_token,
                        with_yaml: output != Output::Table,
                    })
                    .await?
                    .into_inner();
                for d in &r.documents {
                    if output == Output::Yaml && !first {
                        println!("---");
                    }
                    first = false;
                    print!("{}", render(d, output)?);
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
            print!("{}", render(&d, output)?);
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

/// A timestamp in RFC 3339 (UTC, seconds), `-` when absent.
pub(crate) fn time(t: &Option<plumbline_proto::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| {
            chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
        })
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".to_string())
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
) -> anyhow::Result<()> {
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
            println!(
                "{}\t{}\t{}/{}\t{}\t{}",
                time(&e.evaluated_at),
                e.entity_id,
                e.profile,
                e.rule_name,
                plumbline_proto::eval_status_word(e.status),
                e.message
            );
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
) -> anyhow::Result<()> {
    filter.project = project.to_string();
    let mut shown = 0;
    loop {
        filter.page_size = next_page_size(limit, shown);
        let r = c.list_actions(filter.clone()).await?.into_inner();
        for a in &r.actions {
            println!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                time(&a.created_at),
                a.entity_id,
                a.profile,
                a.action_type,
                plumbline_proto::action_status_word(a.status),
                if a.provider_ref.is_empty() {
                    "-"
                } else {
                    &a.provider_ref
                },
                a.message
            );
        }
        shown += r.actions.len();
        if r.next_page_token.is_empty() || shown >= limit {
            return Ok(());
        }
        filter.page_token = r.next_page_token;
    }
}
