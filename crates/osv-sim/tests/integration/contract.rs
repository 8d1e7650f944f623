//! Every answer the simulator serves (querybatch, query, vulns/{id}, errors) against the API
//! shapes of `schema/osv-api.json`, and every record it serves against the OSV schema.

use crate::support::{go_module, jinja2, lodash, Contract};
use plumbline_osv_sim::{validate_record, OsvSim, OsvSimError, MAX_BATCH_QUERIES};
use serde_json::{json, Value};

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("a JSON answer"))
    }

    async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post(path, body.to_string()).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("a JSON answer"))
    }
}

async fn seeded() -> (OsvSim, Client) {
    let (osv, base) = OsvSim::start().await.expect("starts");
    for r in [lodash(), jinja2(), go_module()] {
        osv.add(r).expect("a valid record");
    }
    (
        osv,
        Client {
            http: reqwest::Client::new(),
            base,
        },
    )
}

fn ids(result: &Value) -> Vec<&str> {
    result["vulns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["id"].as_str())
        .collect()
}

#[tokio::test]
async fn querybatch_answers_one_result_per_query_in_order() {
    let (osv, c) = seeded().await;
    let contract = Contract::new();
    let (status, answer) = c
        .post_json(
            "/v1/querybatch",
            &json!({"queries": [
                {"package": {"name": "lodash", "ecosystem": "npm"}, "version": "4.17.20"},
                {"package": {"name": "lodash", "ecosystem": "npm"}, "version": "4.17.21"},
                {"package": {"name": "Jinja2", "ecosystem": "PyPI"}, "version": "2.10"},
                {"package": {"purl": "pkg:pypi/jinja2@2.10.1"}},
                {"commit": "6879efc2c1596d11a6a6ad296f80063b558d5e0f"},
                {"package": {"name": "example.com/mod", "ecosystem": "Go"}, "version": "v1.4.0"},
                {"package": {"name": "example.com/mod", "ecosystem": "Go"}, "version": "v1.4.1"},
                {"package": {"name": "lodash", "ecosystem": "PyPI"}, "version": "4.17.20"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    contract.assert("querybatch", "batchResponse", &answer);
    let results = answer["results"].as_array().expect("results");
    let got: Vec<Vec<&str>> = results.iter().map(ids).collect();
    let expect: Vec<Vec<&str>> = vec![
        vec!["GHSA-35jh-r3h4-6jhm"],
        vec![],
        vec!["PYSEC-2019-217"],
        vec![],
        vec![],
        vec!["GO-2024-0001"],
        vec![],
        vec![],
    ];
    assert_eq!(got, expect);
    assert_eq!(results[1], json!({}), "an empty result is {{}}, as OSV's");
    assert_eq!(results[0]["vulns"][0]["modified"], "2024-03-13T22:16:24Z");
    // Every id it names reads back as a record of the OSV schema.
    for id in got.iter().flatten() {
        let (status, record) = c.get(&format!("/v1/vulns/{id}")).await;
        assert_eq!(status, 200);
        assert_eq!(validate_record(&record), Ok(()));
        assert_eq!(record["id"], *id);
    }
    let log = osv.requests();
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[0].path, "/v1/querybatch");
    assert_eq!(log[0].status, 200);
    assert!(log[0].body.is_some());
}

#[tokio::test]
async fn query_answers_full_records() {
    let (_osv, c) = seeded().await;
    let contract = Contract::new();
    let (status, answer) = c
        .post_json(
            "/v1/query",
            &json!({"package": {"name": "lodash", "ecosystem": "npm"}, "version": "4.17.20"}),
        )
        .await;
    assert_eq!(status, 200);
    contract.assert("query", "queryResponse", &answer);
    assert_eq!(answer["vulns"][0], lodash());
    // Minder's query: PyPI name normalized, no match is `{}`.
    let (status, none) = c
        .post_json(
            "/v1/query",
            &json!({"package": {"name": "jinja2", "ecosystem": "PyPI"}, "version": "2.11.0"}),
        )
        .await;
    assert_eq!((status, &none), (200, &json!({})));
    contract.assert("query (none)", "queryResponse", &none);
    // Without a version: every record of the package.
    let (_, all) = c
        .post_json(
            "/v1/query",
            &json!({"package": {"name": "jinja2", "ecosystem": "PyPI"}}),
        )
        .await;
    contract.assert("query (no version)", "queryResponse", &all);
    assert_eq!(ids(&all), ["PYSEC-2019-217"]);
}

#[tokio::test]
async fn results_are_paginated_per_query() {
    let (osv, c) = seeded().await;
    let contract = Contract::new();
    for n in 1..=4 {
        let mut r = lodash();
        r["id"] = json!(format!("GHSA-0000-0000-000{n}"));
        osv.add(r).expect("valid");
    }
    osv.set_page_size(2);
    let lodash_q = json!({"package": {"name": "lodash", "ecosystem": "npm"}, "version": "4.17.20"});
    // /v1/query
    let mut seen = Vec::new();
    let mut q = lodash_q.clone();
    for page in 0.. {
        assert!(page < 5, "pagination ends");
        let (status, answer) = c.post_json("/v1/query", &q).await;
        assert_eq!(status, 200);
        contract.assert("query page", "queryResponse", &answer);
        seen.extend(ids(&answer).into_iter().map(String::from));
        match answer["next_page_token"].as_str() {
            Some(t) => q["page_token"] = json!(t),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    // /v1/querybatch: only the paginated query goes again, with its token.
    let safe = json!({"package": {"name": "lodash", "ecosystem": "npm"}, "version": "4.17.21"});
    let (_, first) = c
        .post_json("/v1/querybatch", &json!({"queries": [lodash_q, safe]}))
        .await;
    contract.assert("querybatch page 1", "batchResponse", &first);
    let token = first["results"][0]["next_page_token"]
        .as_str()
        .expect("token");
    assert!(first["results"][1].get("next_page_token").is_none());
    let mut again = lodash_q.clone();
    again["page_token"] = json!(token);
    let (_, second) = c
        .post_json("/v1/querybatch", &json!({"queries": [again]}))
        .await;
    contract.assert("querybatch page 2", "batchResponse", &second);
    assert_eq!(ids(&second["results"][0]).len(), 2);
    // A token is bound to its query.
    let mut wrong = safe.clone();
    wrong["page_token"] = json!(token);
    let (status, err) = c
        .post_json("/v1/querybatch", &json!({"queries": [wrong]}))
        .await;
    assert_eq!(status, 400);
    contract.assert("bad token", "error", &err);
    assert_eq!(err["message"], "Invalid page token at index: 0.");
}

#[tokio::test]
async fn errors_have_osvs_shape() {
    let (osv, c) = seeded().await;
    let contract = Contract::new();
    let (status, err) = c.get("/v1/vulns/GHSA-nope-nope-nope").await;
    assert_eq!(
        (status, &err),
        (404, &json!({"code": 5, "message": "Bug not found."}))
    );
    contract.assert("404", "error", &err);
    let (status, err) = c.get("/v1/vulns/CVE-2021-23337").await;
    assert_eq!(status, 404);
    contract.assert("404 alias", "error", &err);
    assert_eq!(
        err["message"],
        "Bug not found, but the following aliases were: GHSA-35jh-r3h4-6jhm"
    );
    let cases: Vec<(&str, String, &str)> = vec![
        ("/v1/querybatch", "{not json".into(), ""),
        ("/v1/query", "[]".into(), ""),
        (
            "/v1/query",
            json!({"package": {"name": "x"}, "versio": "1"}).to_string(),
            "",
        ),
        ("/v1/query", json!({}).to_string(), "Invalid query."),
        (
            "/v1/query",
            json!({"commit": "abc", "version": "1"}).to_string(),
            "Invalid query: commit and version cannot both be set.",
        ),
        (
            "/v1/query",
            json!({"package": {"purl": "pkg:npm/a@1", "name": "a"}}).to_string(),
            "name/ecosystem specified in PURL query",
        ),
        (
            "/v1/querybatch",
            json!({"queries": vec![json!({"commit": "abc"}); MAX_BATCH_QUERIES + 1]}).to_string(),
            "Too many queries.",
        ),
        (
            "/v1/query",
            json!({"package": {"name": "lodash", "ecosystem": "npm"}, "page_token": "x"})
                .to_string(),
            "Invalid page token.",
        ),
    ];
    for (path, body, message) in cases {
        let (status, err) = c.post(path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {err}");
        contract.assert(&body, "error", &err);
        assert_eq!(err["code"], 3);
        if !message.is_empty() {
            assert_eq!(err["message"], message, "{body}");
        }
    }
    let (status, err) = c.get("/v2/elsewhere").await;
    assert_eq!(status, 404);
    contract.assert("unknown route", "error", &err);
    osv.fail_next(503);
    osv.fail_next(429);
    for expect in [503, 429] {
        let (status, err) = c.post_json("/v1/querybatch", &json!({"queries": []})).await;
        assert_eq!(status, expect);
        contract.assert("fault", "error", &err);
    }
    let (status, empty) = c.post_json("/v1/querybatch", &json!({"queries": []})).await;
    assert_eq!((status, &empty), (200, &json!({"results": []})));
    contract.assert("empty batch", "batchResponse", &empty);
    let statuses: Vec<u16> = osv.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses.last(), Some(&200));
    assert!(statuses.contains(&503) && statuses.contains(&429));
}

#[tokio::test]
async fn records_that_break_the_schema_are_refused() {
    let (osv, _c) = seeded().await;
    let mut no_modified = lodash();
    no_modified
        .as_object_mut()
        .expect("object")
        .remove("modified");
    let mut bad_range = lodash();
    bad_range["affected"][0]["ranges"][0]["type"] = json!("RANGE");
    let mut bad_ecosystem = lodash();
    bad_ecosystem["affected"][0]["package"]["ecosystem"] = json!("NPM");
    for bad in [no_modified, bad_range, bad_ecosystem] {
        match osv.add(bad) {
            Err(OsvSimError::Invalid { id, errors }) => {
                assert_eq!(id, "GHSA-35jh-r3h4-6jhm");
                assert!(!errors.is_empty());
            }
            other => panic!("refused: {other:?}"),
        }
    }
}
