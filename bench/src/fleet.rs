//! The simulated fleet as Plumbline registers it: one entity per seeded repository.

use plumbline_domain::{Entity, EntityRef};

/// A simulated repository as registered (the simulator's repositories all default to `main`).
pub fn repository(project: &str, owner: &str, name: &str, id: u64) -> Entity {
    Entity {
        entity_ref: EntityRef::repository("github", id),
        project: project.into(),
        credential: None,
        owner: owner.into(),
        name: name.into(),
        properties: serde_json::json!({"repo_id": id, "default_branch": "main"}),
        labels: vec![],
    }
}

/// Registers a seeded fleet (as `Simulator::seed` returns it) in `project`, straight into the
/// store; returns the entities in the fleet's order.
pub async fn register(
    store: &plumbline_store::Store,
    project: &str,
    fleet: &[(String, String, u64)],
) -> anyhow::Result<Vec<Entity>> {
    let entities: Vec<Entity> = fleet
        .iter()
        .map(|(owner, name, id)| repository(project, owner, name, *id))
        .collect();
    for e in &entities {
        store.upsert_entity(e).await?;
    }
    Ok(entities)
}
