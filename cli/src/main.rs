use anyhow::Context as _;
use clap::{Parser, Subcommand};
use plumb::output::{Output, Printer};
use plumb::resources::{self, DocAction};
use plumb::{access, client, commands};
#[cfg(feature = "dev")]
use plumb::{dev, sim};
use plumbline_proto::v1::DocumentKind;
use serde_json::json;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "plumb",
    about = "Plumbline: keep repositories in a declared security posture",
    after_help = "Exit codes: 0 success; 1 any other error; 2 bad usage; 3 not allowed (unauthenticated or permission denied); 4 not found; 5 refused as invalid or conflicting; 6 unavailable.",
    version
)]
struct Cli {
    /// Control API URL (default: the current context's, else http://127.0.0.1:50051).
    #[arg(long, global = true, env = "PLUMB_CONTROL_URL")]
    control_url: Option<String>,
    /// Bearer token for the control API (sent only over TLS, or to a loopback address).
    #[arg(long, global = true, env = "PLUMB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM CA certificate that signed the control API's certificate (default: system roots).
    #[arg(long, global = true, env = "PLUMB_CONTROL_CA_FILE")]
    control_ca_file: Option<PathBuf>,
    /// Project to act on (default: the current context's, else `default`).
    #[arg(long, global = true, env = "PLUMB_PROJECT")]
    project: Option<String>,
    /// Use this context of the configuration file instead of the current one (see `plumb
    /// config`). Flags and environment variables override what a context says.
    #[arg(long, global = true, env = "PLUMB_CONTEXT")]
    context: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process: services, control API, and a simulated GitHub fleet.
    #[cfg(feature = "dev")]
    Dev(dev::DevArgs),
    /// Run the GitHub simulator on its own (the services then run as separate processes
    /// against it); prints its URL and the settings each service needs.
    #[cfg(feature = "dev")]
    Sim(sim::SimArgs),
    /// Apply the embedded database migrations.
    Migrate {
        #[arg(
            long,
            env = "PLUMB_DATABASE_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/plumbline",
            hide_env_values = true
        )]
        database_url: String,
    },
    /// Rule types.
    Ruletype {
        #[command(subcommand)]
        command: RuletypeCommand,
    },
    /// Data sources (REST functions that Rego policies call).
    Datasource {
        #[command(subcommand)]
        command: DocCommand,
    },
    /// Profiles.
    Profile {
        #[command(subcommand)]
        command: DocCommand,
    },
    /// Repositories.
    Repo {
        #[command(subcommand)]
        command: RepoCommand,
    },
    /// The latest verdicts, as a table.
    Status {
        /// Only this entity (id as shown by `plumb repo list`).
        #[arg(long, default_value = "")]
        entity: String,
        /// Only rules in this status: pass, fail, error or skipped.
        #[arg(long, default_value = "")]
        only: String,
        /// Counts per profile, rule and status instead of one line per entity and rule (what
        /// to ask of a large fleet).
        #[arg(long)]
        summary: bool,
        /// `table` aligns columns under a header; the others print as every list does.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
    /// Re-evaluate one entity, or every entity of the project.
    Reconcile {
        #[arg(long, default_value = "")]
        entity: String,
    },
    /// Projects: create, list, delete.
    Project {
        #[command(subcommand)]
        command: access::ProjectCommand,
    },
    /// Service-account tokens: create (shown once), revoke, list.
    Token {
        #[command(subcommand)]
        command: access::TokenCommand,
    },
    /// The credentials the project acts with: GitHub App installations and sealed tokens.
    Provider {
        #[command(subcommand)]
        command: access::ProviderCommand,
    },
    /// Members of the project (--project) and their roles.
    Role {
        #[command(subcommand)]
        command: access::RoleCommand,
    },
    /// The project's audit log.
    Audit {
        #[command(subcommand)]
        command: access::AuditCommand,
    },
    /// Log in with OIDC (device code) and keep the ID token in a context.
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// Named contexts (API URL, project, CA, token) in a configuration file.
    Config {
        #[command(subcommand)]
        command: plumb::config::ConfigCommand,
    },
    /// Print a shell completion script: `plumb completion bash > /etc/bash_completion.d/plumb`
    /// (also zsh, fish, powershell, elvish).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Evaluation history: a row per change of a rule's verdict (status, message or input).
    History {
        #[command(subcommand)]
        command: resources::HistoryCommand,
    },
    /// Remediations and alerts taken.
    Action {
        #[command(subcommand)]
        command: resources::ActionCommand,
    },
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Print where to approve the login and a code, wait for the approval, and keep the ID
    /// token in the context (mode 0600).
    Login(plumb::login::LoginArgs),
}

#[derive(Subcommand)]
enum DocCommand {
    /// Create or update from a Minder-format YAML file.
    Apply {
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
    },
    #[command(flatten)]
    Stored(DocAction),
}

#[derive(Subcommand)]
enum RuletypeCommand {
    /// Create or update from a Minder-format YAML file.
    Apply {
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
    },
    /// Run rule-type test suites: for each X.yaml with an X.test.yaml beside it (PATH is a file
    /// or a folder searched recursively), run every case with its fixtures (X.testdata/).
    /// Prints one line per case and `N passed, M failed`; exits 1 when any case failed.
    Test {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Run the cases of this test file (kept elsewhere) against the single rule type given;
        /// fixture paths resolve relative to this file.
        #[arg(long)]
        tests: Option<PathBuf>,
    },
    #[command(flatten)]
    Stored(DocAction),
}

#[derive(Subcommand)]
enum RepoCommand {
    /// Register OWNER/NAME; it is evaluated right away. 'OWNER/*' (quoted) registers every
    /// repository of the organisation OWNER the provider can see, from its repository listing:
    /// one GitHub request per 100 repositories, so enrolling a fleet leaves the quota to its
    /// first evaluation.
    Register {
        full_name: String,
        #[arg(long = "label")]
        labels: Vec<String>,
        /// The project's provider to read and change it with (default: the project's only
        /// one; with none, the services' own credential, for the operator's project only).
        #[arg(long, default_value = "")]
        provider: String,
    },
    List {
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
    /// Stop evaluating a repository (id as shown by `plumb repo list`); its history stays.
    Deregister { entity_id: String },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line a person reads: the control API's message, not tonic's debug form.
            match e.downcast_ref::<tonic::Status>() {
                Some(status) => eprintln!("error: {}", status.message()),
                None => eprintln!("error: {e:#}"),
            }
            std::process::ExitCode::from(exit_code(&e))
        }
    }
}

/// Exit codes (see `plumb --help`): 1 any other error, 2 bad usage (clap), 3 not allowed
/// (unauthenticated or permission denied), 4 not found, 5 refused as invalid or conflicting,
/// 6 the control API or what it needs is unavailable.
fn exit_code(e: &anyhow::Error) -> u8 {
    use tonic::Code;
    match e.downcast_ref::<tonic::Status>().map(tonic::Status::code) {
        Some(Code::Unauthenticated | Code::PermissionDenied) => 3,
        Some(Code::NotFound) => 4,
        Some(Code::InvalidArgument | Code::FailedPrecondition | Code::AlreadyExists) => 5,
        Some(Code::Unavailable | Code::DeadlineExceeded) => 6,
        _ => 1,
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // The CLI prints what matters itself; services inside `plumb dev` log warnings and errors
    // only (RUST_LOG=info shows everything).
    #[cfg(feature = "dev")]
    let tracing = match &cli.command {
        // `plumb dev` runs the services: their spans are exported like theirs would be.
        Command::Dev(args) => Some(plumbline_telemetry::traces::init(
            &plumbline_telemetry::TracingConfig {
                otlp_endpoint: args.otlp_endpoint.clone(),
                default_filter: "warn".into(),
                ..plumbline_telemetry::TracingConfig::new("plumb-dev", false)
            },
        )?),
        _ => None,
    };
    #[cfg(not(feature = "dev"))]
    let tracing: Option<plumbline_telemetry::Tracing> = None;
    if tracing.is_none() {
        plumbline_telemetry::init_logging_with(false, "warn");
    }
    // What talks to the control API reads the configuration file's context; flags and
    // environment variables override it.
    let uses_api = match &cli.command {
        #[cfg(feature = "dev")]
        Command::Dev(_) | Command::Sim(_) => false,
        Command::Migrate { .. }
        | Command::Completion { .. }
        | Command::Config { .. }
        | Command::Auth { .. }
        | Command::Ruletype {
            command: RuletypeCommand::Test { .. },
        } => false,
        _ => true,
    };
    let context = match uses_api {
        true => plumb::config::current(
            &plumb::config::load(&plumb::config::path()?)?,
            cli.context.as_deref(),
        )?
        .unwrap_or_default(),
        false => plumb::config::Context::default(),
    };
    let api_url = cli
        .control_url
        .clone()
        .or(context.control_url)
        .unwrap_or_else(|| "http://127.0.0.1:50051".to_string());
    let api_token = cli.token.clone().or(context.token);
    let api_ca = cli.control_ca_file.clone().or(context.control_ca_file);
    let project = cli
        .project
        .clone()
        .or(context.project)
        .unwrap_or_else(|| "default".to_string());
    match cli.command {
        #[cfg(feature = "dev")]
        Command::Dev(args) => {
            let shutdown = plumbline_runtime::shutdown_on_signal();
            let ran = dev::run(args, shutdown).await;
            if let Some(t) = tracing.clone() {
                // The last spans leave before the process does.
                let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
            }
            ran?;
        }
        #[cfg(feature = "dev")]
        Command::Sim(args) => {
            let shutdown = plumbline_runtime::shutdown_on_signal();
            sim::run(args, shutdown).await?;
        }
        Command::Migrate { database_url } => {
            let store = plumbline_store::Store::connect(&database_url, 1)?;
            let n = store.migrate().await.context("migrating")?;
            println!(
                "{n} migration(s) applied; schema version {}",
                store.schema_version().await?
            );
        }
        Command::Ruletype {
            command: RuletypeCommand::Test { paths, tests },
        } => {
            let failed = commands::test_rule_types(&paths, tests.as_deref()).await?;
            if failed > 0 {
                std::process::exit(1);
            }
        }
        Command::Ruletype {
            command: RuletypeCommand::Apply { files },
        } => {
            let mut c =
                client::connect_with(&api_url, api_token.as_deref(), api_ca.as_deref()).await?;
            for f in files {
                let r =
                    commands::apply_rule_type(&mut c, &project, &commands::read_file(&f)?).await?;
                println!(
                    "rule type {} version {}{}",
                    r.name,
                    r.version,
                    if r.changed { "" } else { " (unchanged)" }
                );
            }
        }
        Command::Datasource {
            command: DocCommand::Apply { files },
        } => {
            let mut c =
                client::connect_with(&api_url, api_token.as_deref(), api_ca.as_deref()).await?;
            for f in files {
                let r = c
                    .apply_data_source(plumbline_proto::v1::ApplyDataSourceRequest {
                        project: project.clone(),
                        yaml: commands::read_file(&f)?,
                    })
                    .await?
                    .into_inner();
                println!(
                    "data source {} version {}{}",
                    r.name,
                    r.version,
                    if r.changed { "" } else { " (unchanged)" }
                );
            }
        }
        Command::Profile {
            command: DocCommand::Apply { files },
        } => {
            let mut c =
                client::connect_with(&api_url, api_token.as_deref(), api_ca.as_deref()).await?;
            for f in files {
                let r =
                    commands::apply_profile(&mut c, &project, &commands::read_file(&f)?).await?;
                println!(
                    "profile {} version {}{}; {} entities queued",
                    r.name,
                    r.version,
                    if r.changed { "" } else { " (unchanged)" },
                    r.entities_queued
                );
            }
        }
        Command::Repo {
            command:
                RepoCommand::Register {
                    full_name,
                    labels,
                    provider,
                },
        } => {
            let mut c =
                client::connect_with(&api_url, api_token.as_deref(), api_ca.as_deref()).await?;
            if let Some(owner) = full_name.strip_suffix("/*") {
                let r =
                    commands::register_owner(&mut c, &project, owner, labels, &provider).await?;
                println!(
                    "{} repositories of {owner} registered ({} new), {} left alone (registered in another project); {} GitHub request(s)",
                    r.registered, r.created, r.other_project, r.requests
                );
            } else {
                let r =
                    commands::register_repository(&mut c, &project, &full_name, labels, &provider)
                        .await?;
                println!(
                    "{} registered as {} (default branch {})",
                    full_name, r.entity_id, r.default_branch
                );
            }
        }
        Command::Repo {
            command: RepoCommand::List { output },
        } => {
            let mut c =
                client::connect_with(&api_url, api_token.as_deref(), api_ca.as_deref()).await?;
            let mut printer = Printer::new(output, &["entity_id", "repository", "default_branch"]);
            let mut page_token = String::new();
            loop {
                let r = c
                    .list_repositories(plumbline_proto::v1::ListRepositoriesRequest {
                        project: project.clone(),
                        page_size: 0,
                        page_token,
                    })
                    .await?
                    .into_inner();
                for repo in r.repositories {
                    printer.row(vec![
                        ("entity_id", json!(repo.entity_id)),
                        ("repository", json!(format!("{}/{}", repo.owner, repo.name))),
                        ("default_branch", json!(repo.default_branch)),
                        ("labels", json!(repo.labels)),
                        ("provider", json!(repo.provider)),
                    ])?;
                }
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
        }
        Command::Status {
            entity,
            only,
            summary,
            output,
        } => {
            let mut c =
                client::connect_with(&api_url, api_token.as_deref(), api_ca.as_deref()).await?;
            if summary {
                print!("{}", commands::posture(&mut c, &project).await?);
            } else {
                if output == Output::Table {
                    // Aligned columns need every row first.
                    let rows = commands::status_filtered(&mut c, &project, &entity, &only).await?;
                    print!("{}", commands::status_table(&rows));
                    // Below the table: what waits and why, so numbers that stand still are
                    // explained (JSON and YAML stay one record per line).
                    for line in commands::activity(&mut c, &project).await? {
                        println!("{line}");
                    }
                } else {
                    // The other formats print each page as it arrives.
                    let mut printer = Printer::new(output, &[]);
                    let mut page_token = String::new();
                    loop {
                        let page = c
                            .list_status(plumbline_proto::v1::ListStatusRequest {
                                project: project.clone(),
                                entity_id: entity.clone(),
                                profile: String::new(),
                                status: only.clone(),
                                page_size: 1000,
                                page_token,
                            })
                            .await?
                            .into_inner();
                        for r in &page.statuses {
                            printer.row(commands::status_row(r))?;
                        }
                        if page.next_page_token.is_empty() {
                            break;
                        }
                        page_token = page.next_page_token;
                    }
                }
            }
        }
        Command::Reconcile { entity } => {
            let mut c =
                client::connect_with(&api_url, api_token.as_deref(), api_ca.as_deref()).await?;
            let r = c
                .reconcile(plumbline_proto::v1::ReconcileRequest {
                    project,
                    entity_id: entity,
                })
                .await?
                .into_inner();
            println!("{} entities queued", r.entities_queued);
        }
        Command::Project { command } => {
            let mut c = connect(&api_url, &api_token, &api_ca).await?;
            access::project(&mut c, command).await?;
        }
        Command::Token { command } => {
            let mut c = connect(&api_url, &api_token, &api_ca).await?;
            access::token(&mut c, command).await?;
        }
        Command::Provider { command } => {
            let mut c = connect(&api_url, &api_token, &api_ca).await?;
            access::provider(&mut c, &project, command).await?;
        }
        Command::Role { command } => {
            let mut c = connect(&api_url, &api_token, &api_ca).await?;
            access::role(&mut c, &project, command).await?;
        }
        Command::Config { command } => plumb::config::run(command)?,
        Command::Auth {
            command: AuthCommand::Login(args),
        } => plumb::login::login(args).await?,
        Command::Completion { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "plumb", &mut std::io::stdout());
        }
        Command::Audit { command } => {
            let mut c = connect(&api_url, &api_token, &api_ca).await?;
            access::audit(&mut c, &project, command).await?;
        }
        Command::Ruletype {
            command: RuletypeCommand::Stored(action),
        } => {
            let mut c = connect(&api_url, &api_token, &api_ca).await?;
            resources::documents(&mut c, &project, DocumentKind::RuleType, action).await?;
        }
        Command::Datasource {
            command: DocCommand::Stored(action),
        } => {
            let mut c = connect(&api_url, &api_token, &api_ca).await?;
            resources::documents(&mut c, &project, DocumentKind::DataSource, action).await?;
        }
        Command::Profile {
            command: DocCommand::Stored(action),
        } => {
            let mut c = connect(&api_url, &api_token, &api_ca).await?;
            resources::documents(&mut c, &project, DocumentKind::Profile, action).await?;
        }
        Command::Repo {
            command: RepoCommand::Deregister { entity_id },
        } => {
            let mut c = connect(&api_url, &api_token, &api_ca).await?;
            resources::deregister(&mut c, &project, entity_id).await?;
        }
        Command::History {
            command:
                resources::HistoryCommand::List {
                    entity,
                    profile,
                    rule,
                    status,
                    limit,
                    output,
                },
        } => {
            let mut c = connect(&api_url, &api_token, &api_ca).await?;
            let filter = plumbline_proto::v1::ListHistoryRequest {
                entity_id: entity,
                profile,
                rule_name: rule,
                ..Default::default()
            };
            resources::history(&mut c, &project, filter, status, limit, output).await?;
        }
        Command::Action {
            command:
                resources::ActionCommand::List {
                    entity,
                    profile,
                    limit,
                    output,
                },
        } => {
            let mut c = connect(&api_url, &api_token, &api_ca).await?;
            let filter = plumbline_proto::v1::ListActionsRequest {
                entity_id: entity,
                profile,
                ..Default::default()
            };
            resources::actions(&mut c, &project, filter, limit, output).await?;
        }
    }
    Ok(())
}

async fn connect(
    url: &str,
    token: &Option<String>,
    ca_file: &Option<PathBuf>,
) -> anyhow::Result<client::Client> {
    client::connect_with(url, token.as_deref(), ca_file.as_deref()).await
}
