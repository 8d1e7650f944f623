//! engine_eval: rule evaluations per second through Plumbline's engine, beside raw regorus on
//! the same policy and input, in the same run.
//!
//! Rules from Minder's corpus (`../shared/minder-rules`): `secret_scanning` (rest ingest, Rego
//! deny-by-default) and `branch_protection_allow_force_pushes` (rest ingest, jq). The input is
//! ingested once (ingest is provider I/O, not engine work); each timed iteration is one full
//! `CompiledRule::evaluate` (input assembly with entity properties and profile, the policy's
//! declared rules — skip, allow — and the outcome). The raw baseline computes the same verdict
//! with bare regorus at its best: one engine with the policy compiled, the input converted
//! once, then `set_input` + `eval_rule` of `data.minder.skip` and `data.minder.allow` (Minder's
//! deny-by-default needs both: a skip overrides an allow). `raw_regorus_allow_only_evals_per_s`
//! is the same without `skip`, for reference. Both convert the ingested JSON to Rego
//! values once (a ~16 KB GitHub repository object costs ~0.1 ms to convert, more than the
//! evaluation), which the engine does once per ingested input; `convert_per_s` reports it.
//!
//! Prints: engine_evals_per_s (the Rego rule), raw_regorus_evals_per_s, ratio,
//! raw_regorus_allow_only_evals_per_s, engine_jq_evals_per_s, convert_per_s. `BENCH_SECONDS` sets the time per measurement (default 3).

use anyhow::{bail, Context as _};
use plumbline_domain::{Entity, EntityRef, EvalStatus};
use plumbline_engine::{CompiledRule, Ingested, Invocation, RuleType};
use std::path::Path;
use std::time::{Duration, Instant};

fn corpus() -> anyhow::Result<std::path::PathBuf> {
    for c in ["../shared/minder-rules", "../../shared/minder-rules"] {
        if Path::new(c).is_dir() {
            return Ok(c.into());
        }
    }
    bail!("the minder corpus (../shared/minder-rules) is not beside this checkout; run from the repository root")
}

fn load(path: &Path) -> anyhow::Result<CompiledRule> {
    let yaml = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    Ok(CompiledRule::compile(RuleType::from_yaml(&yaml)?)?)
}

/// Runs `f` repeatedly for `secs`; returns iterations per second.
fn rate(secs: Duration, mut f: impl FnMut()) -> f64 {
    // Warm up (allocations, caches) before timing.
    for _ in 0..200 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < secs {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let secs = Duration::from_secs_f64(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0),
    );
    let corpus = corpus()?;
    let entity = Entity {
        entity_ref: EntityRef::repository("github", 1),
        project: "default".into(),
        credential: None,
        owner: "mindersec".into(),
        name: "minder".into(),
        properties: serde_json::json!({"default_branch": "main"}),
        labels: vec![],
    };
    let (params, def) = (serde_json::json!({}), serde_json::json!({}));
    let inv = Invocation {
        entity: &entity,
        params: &params,
        def: &def,
    };

    // Rego: secret_scanning with its "enabled" fixture.
    let rego_path = corpus.join("rule-types/github/secret_scanning.yaml");
    let rego_rule = load(&rego_path)?;
    let body: serde_json::Value = serde_json::from_slice(&std::fs::read(
        corpus.join("rule-types/github/secret_scanning.testdata/enabled.json"),
    )?)?;
    let ingested = Ingested::new(body.clone(), None, "d");
    let first = rego_rule.evaluate(&ingested, &inv);
    if first.status != EvalStatus::Pass {
        bail!("secret_scanning did not pass on its fixture: {first:?}");
    }
    let engine_rate = rate(secs, || {
        std::hint::black_box(rego_rule.evaluate(&ingested, &inv));
    });

    // Raw regorus, same policy and input.
    let rt = RuleType::from_yaml(&std::fs::read_to_string(&rego_path)?)?;
    let policy = rt
        .def
        .eval
        .rego
        .as_ref()
        .context("secret_scanning has a rego policy")?
        .def
        .clone();
    let mut raw = regorus::Engine::new();
    raw.set_rego_v0(true);
    raw.add_policy("policy.rego".into(), policy)?;
    let input = regorus::Value::from(
        serde_json::json!({"ingested": body, "profile": {}, "properties": entity.properties}),
    );
    raw.set_input(input.clone());
    if raw.eval_rule("data.minder.allow".into())? != regorus::Value::from(true) {
        bail!("raw regorus does not allow the fixture");
    }
    let raw_rate = rate(secs, || {
        raw.set_input(input.clone());
        std::hint::black_box(raw.eval_rule("data.minder.skip".into()).ok());
        std::hint::black_box(raw.eval_rule("data.minder.allow".into()).ok());
    });
    let raw_allow_only_rate = rate(secs, || {
        raw.set_input(input.clone());
        std::hint::black_box(raw.eval_rule("data.minder.allow".into()).ok());
    });

    // jq: branch_protection_allow_force_pushes.
    let jq_rule =
        load(&corpus.join("rule-types/github/branch_protection_allow_force_pushes.yaml"))?;
    let jq_in = Ingested::new(
        serde_json::json!({"allow_force_pushes": {"enabled": false}}),
        None,
        "d",
    );
    if jq_rule.evaluate(&jq_in, &inv).status != EvalStatus::Pass {
        bail!("the jq rule did not pass on its input");
    }
    let jq_rate = rate(secs, || {
        std::hint::black_box(jq_rule.evaluate(&jq_in, &inv));
    });

    println!("engine_evals_per_s = {engine_rate:.0}");
    println!("raw_regorus_evals_per_s = {raw_rate:.0}");
    println!("ratio = {:.2}", engine_rate / raw_rate);
    println!("raw_regorus_allow_only_evals_per_s = {raw_allow_only_rate:.0}");
    println!("engine_jq_evals_per_s = {jq_rate:.0}");
    let convert_rate = rate(secs, || {
        std::hint::black_box(regorus::Value::from(body.clone()));
    });
    println!("convert_per_s = {convert_rate:.0}");
    Ok(())
}
