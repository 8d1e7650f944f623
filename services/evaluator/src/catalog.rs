//! Per-replica cache of a project's compiled rule types and parsed profiles.
//!
//! Compiling Rego and parsing templates is far costlier than checking versions, so the cache
//! keeps compiled documents and reloads only when Postgres reports a different set of
//! (name, version) pairs; the check runs at most once per `max_staleness`, which bounds how long
//! a changed profile can go unnoticed.

use plumbline_engine::datasource::DataSources;
use plumbline_engine::{CompiledProfile, CompiledRule, EngineError, Profile, RuleType};
use plumbline_store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A project's documents at one set of versions.
pub struct Snapshot {
    pub rules: HashMap<String, (i64, Result<Arc<CompiledRule>, EngineError>)>,
    pub profiles: Vec<ProfileEntry>,
}

pub struct ProfileEntry {
    pub compiled: Result<Arc<CompiledProfile>, EngineError>,
}

struct Entry {
    versions: Vec<(String, String, i64)>,
    checked: Instant,
    snapshot: Arc<Snapshot>,
}

/// Shared by the evaluator's concurrent tasks: one lock around the map, held while a project's
/// documents are checked or reloaded, so a change is loaded once, not once per task.
pub struct Catalog {
    store: Store,
    max_staleness: Duration,
    entries: tokio::sync::Mutex<HashMap<String, Entry>>,
}

impl Catalog {
    pub fn new(store: Store, max_staleness: Duration) -> Self {
        Catalog {
            store,
            max_staleness,
            entries: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    pub async fn snapshot(&self, project: &str) -> Result<Arc<Snapshot>, StoreError> {
        let mut entries = self.entries.lock().await;
        if let Some(e) = entries.get(project) {
            if e.checked.elapsed() < self.max_staleness {
                return Ok(e.snapshot.clone());
            }
        }
        let versions = self.store.document_versions(project).await?;
        if let Some(e) = entries.get_mut(project) {
            if e.versions == versions {
                e.checked = Instant::now();
                return Ok(e.snapshot.clone());
            }
        }
        let snapshot = Arc::new(self.load(project).await?);
        entries.insert(
            project.to_string(),
            Entry {
                versions,
                checked: Instant::now(),
                snapshot: snapshot.clone(),
            },
        );
        Ok(snapshot)
    }

    async fn load(&self, project: &str) -> Result<Snapshot, StoreError> {
        let mut sources = DataSources::new();
        for doc in self.store.list_data_sources(project).await? {
            if let Err(e) = sources.add_yaml(&doc.source_yaml) {
                tracing::warn!(data_source = %doc.name, error = %e, "stored data source does not load");
            }
        }
        let mut rules = HashMap::new();
        for doc in self.store.list_rule_types(project).await? {
            let compiled = RuleType::from_yaml(&doc.source_yaml)
                .and_then(|rt| CompiledRule::compile_with(rt, &sources))
                .map(Arc::new);
            if let Err(e) = &compiled {
                tracing::warn!(rule_type = %doc.name, error = %e, "stored rule type does not compile");
            }
            rules.insert(doc.name.clone(), (doc.version, compiled));
        }
        let mut profiles = Vec::new();
        for doc in self.store.list_profiles(project).await? {
            let compiled = Profile::from_yaml(&doc.source_yaml)
                .and_then(CompiledProfile::compile)
                .map(Arc::new);
            if let Err(e) = &compiled {
                tracing::warn!(profile = %doc.name, error = %e, "stored profile does not compile");
            }
            profiles.push(ProfileEntry { compiled });
        }
        tracing::info!(
            project,
            rule_types = rules.len(),
            profiles = profiles.len(),
            "catalog loaded"
        );
        Ok(Snapshot { rules, profiles })
    }
}
