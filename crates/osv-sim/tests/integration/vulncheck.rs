//! The engine's vulnerability check against the simulator, over HTTP.

use crate::support::{go_module, jinja2, lodash, HttpFetcher};
use plumbline_engine::vulncheck::{check, Package, VulncheckError};
use plumbline_osv_sim::OsvSim;

fn pkg(ecosystem: &str, name: &str, version: &str) -> Package {
    Package {
        ecosystem: ecosystem.into(),
        name: name.into(),
        version: version.into(),
    }
}

/// Runs `check` on a blocking thread, as the evaluator runs Rego with its fetcher.
async fn run(
    endpoint: String,
    packages: Vec<Package>,
) -> Result<Vec<plumbline_engine::vulncheck::Vulnerable>, VulncheckError> {
    let fetcher = HttpFetcher {
        client: reqwest::Client::new(),
        runtime: tokio::runtime::Handle::current(),
    };
    tokio::task::spawn_blocking(move || check(&fetcher, &endpoint, &packages))
        .await
        .expect("the check does not panic")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_finds_vulnerable_packages_with_their_fixes() {
    let (osv, base) = OsvSim::start().await.expect("starts");
    for r in [lodash(), jinja2(), go_module()] {
        osv.add(r).expect("valid");
    }
    let packages = vec![
        pkg("npm", "lodash", "4.17.20"),
        pkg("npm", "lodash", "4.17.21"),
        pkg("PyPI", "Jinja2", "2.10"),
        pkg("PyPI", "jinja2", "2.10.1"),
        pkg("Go", "example.com/mod", "v1.3.0"),
        pkg("crates.io", "serde", "1.0.0"),
    ];
    // Minder's endpoint form, `.../v1/query`.
    let found = run(format!("{base}/v1/query"), packages)
        .await
        .expect("check");
    let summary: Vec<(&str, &str, Vec<&str>)> = found
        .iter()
        .map(|v| {
            (
                v.package.name.as_str(),
                v.package.version.as_str(),
                v.advisories.iter().map(|a| a.id.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("lodash", "4.17.20", vec!["GHSA-35jh-r3h4-6jhm"]),
            ("Jinja2", "2.10", vec!["PYSEC-2019-217"]),
            ("example.com/mod", "v1.3.0", vec!["GO-2024-0001"]),
        ]
    );
    let lodash = &found[0].advisories[0];
    assert_eq!(lodash.fixed, ["4.17.21"]);
    assert_eq!(
        lodash.summary.as_deref(),
        Some("Command Injection in lodash")
    );
    assert_eq!(lodash.aliases, ["CVE-2021-23337"]);
    assert_eq!(lodash.severity.as_deref(), Some("HIGH"));
    let jinja = &found[1].advisories[0];
    assert_eq!(jinja.fixed, ["2.10.1"]);
    assert_eq!(jinja.aliases, ["CVE-2019-10906", "GHSA-462w-v97r-4m45"]);
    assert_eq!(
        found[2].advisories[0].fixed,
        Vec::<String>::new(),
        "last_affected only"
    );

    // One querybatch, one read per advisory.
    let log = osv.requests();
    let paths: Vec<(&str, &str)> = log
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("POST", "/v1/querybatch"),
            ("GET", "/v1/vulns/GHSA-35jh-r3h4-6jhm"),
            ("GET", "/v1/vulns/PYSEC-2019-217"),
            ("GET", "/v1/vulns/GO-2024-0001"),
        ]
    );
    assert_eq!(
        log[0]
            .body
            .as_ref()
            .map(|b| b["queries"][2]["package"].clone()),
        Some(serde_json::json!({"name": "jinja2", "ecosystem": "PyPI"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_follows_pages_and_reports_unavailability() {
    let (osv, base) = OsvSim::start().await.expect("starts");
    for n in 1..=5 {
        let mut r = lodash();
        r["id"] = serde_json::json!(format!("GHSA-0000-0000-000{n}"));
        osv.add(r).expect("valid");
    }
    osv.set_page_size(2);
    let found = run(base.clone(), vec![pkg("npm", "lodash", "4.17.0")])
        .await
        .expect("check");
    assert_eq!(found[0].advisories.len(), 5);
    let batches = osv
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/querybatch")
        .count();
    assert_eq!(batches, 3, "pages of 2, 2 and 1");
    let safe = run(base.clone(), vec![pkg("npm", "lodash", "4.17.21")])
        .await
        .expect("check");
    assert!(safe.is_empty());

    osv.fail_next(503);
    let err = run(base.clone(), vec![pkg("npm", "lodash", "4.17.0")])
        .await
        .expect_err("unavailable");
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("/v1/querybatch") && err.to_string().contains("503"),
        "{err}"
    );
    drop(osv);
    let err = run(base, vec![pkg("npm", "lodash", "4.17.0")])
        .await
        .expect_err("gone");
    assert!(
        err.is_transient(),
        "a refused connection is transient: {err}"
    );
}
