//! The license of a repository: `GET /repos/{owner}/{repo}/license` and the `license` field of
//! repository objects.
//!
//! GitHub (through its `licensee` library) looks for a license file at the root of the default
//! branch and matches its text against known licenses. The simulator recognises the common
//! licenses by phrases every copy of them contains; any other license file is reported the way
//! GitHub reports an unrecognised one (`other`, SPDX id `NOASSERTION`).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::api::{base_of, find_repo, json_response, tagged, ApiError};
use crate::content::resolve_commit;
use crate::git::EntryMode;
use crate::state::Repo;
use crate::Simulator;

const ROUTE_LICENSE: &str = "/repos/{owner}/{repo}/license";

const DOCS_LICENSE: &str =
    "https://docs.github.com/rest/licenses/licenses#get-the-license-for-a-repository";

/// File names GitHub treats as the license, in order of preference (matched case-insensitively).
const LICENSE_FILES: &[&str] = &[
    "LICENSE",
    "LICENSE.md",
    "LICENSE.txt",
    "LICENCE",
    "LICENCE.md",
    "LICENCE.txt",
    "COPYING",
    "COPYING.md",
    "COPYING.txt",
];

/// A license GitHub knows: key, display name, SPDX id and GitHub's numeric id (for the node
/// id).
struct Known {
    key: &'static str,
    name: &'static str,
    spdx_id: &'static str,
    id: u32,
}

const MIT: Known = Known {
    key: "mit",
    name: "MIT License",
    spdx_id: "MIT",
    id: 13,
};
const APACHE: Known = Known {
    key: "apache-2.0",
    name: "Apache License 2.0",
    spdx_id: "Apache-2.0",
    id: 2,
};
const GPL3: Known = Known {
    key: "gpl-3.0",
    name: "GNU General Public License v3.0",
    spdx_id: "GPL-3.0",
    id: 9,
};
const AGPL3: Known = Known {
    key: "agpl-3.0",
    name: "GNU Affero General Public License v3.0",
    spdx_id: "AGPL-3.0",
    id: 1,
};
const BSD3: Known = Known {
    key: "bsd-3-clause",
    name: "BSD 3-Clause \"New\" or \"Revised\" License",
    spdx_id: "BSD-3-Clause",
    id: 5,
};
const BSD2: Known = Known {
    key: "bsd-2-clause",
    name: "BSD 2-Clause \"Simplified\" License",
    spdx_id: "BSD-2-Clause",
    id: 4,
};
const MPL2: Known = Known {
    key: "mpl-2.0",
    name: "Mozilla Public License 2.0",
    spdx_id: "MPL-2.0",
    id: 14,
};
const UNLICENSE: Known = Known {
    key: "unlicense",
    name: "The Unlicense",
    spdx_id: "Unlicense",
    id: 15,
};

pub(crate) fn routes(sim: &Simulator) -> Router<Simulator> {
    Router::new().route(ROUTE_LICENSE, tagged(sim, ROUTE_LICENSE, get(get_license)))
}

/// Lower-cased text with all whitespace runs collapsed to one space, so phrases match across
/// line wrapping.
fn normalize(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The license a text is, by phrases each license's text contains; None = unrecognised.
fn classify(text: &str) -> Option<&'static Known> {
    let t = normalize(text);
    let has = |phrase: &str| t.contains(phrase);
    if has("apache license") && has("version 2.0") {
        Some(&APACHE)
    } else if has("gnu affero general public license") && has("version 3") {
        Some(&AGPL3)
    } else if has("gnu general public license") && has("version 3") && !has("lesser") {
        Some(&GPL3)
    } else if has("mozilla public license") && (has("version 2.0") || has("v. 2.0")) {
        Some(&MPL2)
    } else if has("permission is hereby granted, free of charge, to any person obtaining a copy") {
        Some(&MIT)
    } else if has("redistribution and use in source and binary forms") {
        if has("neither the name") || has("names of its contributors may be used") {
            Some(&BSD3)
        } else {
            Some(&BSD2)
        }
    } else if has("this is free and unencumbered software released into the public domain") {
        Some(&UNLICENSE)
    } else {
        None
    }
}

/// GitHub's "license simple" object; an unrecognised license is `other` / `NOASSERTION`.
fn license_json(base: &str, known: Option<&Known>) -> Value {
    use base64::Engine;
    let node_id =
        |id: u32| base64::engine::general_purpose::STANDARD.encode(format!("07:License{id}"));
    match known {
        Some(k) => json!({
            "key": k.key,
            "name": k.name,
            "spdx_id": k.spdx_id,
            "url": format!("{base}/licenses/{}", k.key),
            "node_id": node_id(k.id),
        }),
        None => json!({
            "key": "other",
            "name": "Other",
            "spdx_id": "NOASSERTION",
            "url": null,
            "node_id": node_id(0),
        }),
    }
}

/// The license file at the root of a commit: (path, blob sha).
fn license_file(repo: &Repo, commit: &str) -> Option<(String, String)> {
    let tree = &repo.git.commit(commit)?.tree;
    let entries = repo.git.tree(tree)?;
    LICENSE_FILES.iter().find_map(|wanted| {
        entries
            .iter()
            .find(|e| {
                e.name.eq_ignore_ascii_case(wanted)
                    && matches!(e.mode, EntryMode::File(crate::FileMode::Regular))
            })
            .map(|e| (e.name.clone(), e.sha.clone()))
    })
}

fn detect(repo: &Repo, sha: &str) -> Option<&'static Known> {
    let text = String::from_utf8_lossy(repo.git.blob(sha).unwrap_or_default()).into_owned();
    classify(&text)
}

/// The `license` field of a repository object: the default branch's license, or null.
pub(crate) fn repo_license(base: &str, repo: &Repo) -> Value {
    let Some(head) = repo.branches.get(&repo.default_branch) else {
        return Value::Null;
    };
    match license_file(repo, &head.sha) {
        Some((_, sha)) => license_json(base, detect(repo, &sha)),
        None => Value::Null,
    }
}

async fn get_license(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let not_found = || ApiError::not_found("Not Found", DOCS_LICENSE);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_LICENSE)?;
    let reference = query
        .get("ref")
        .filter(|r| !r.is_empty())
        .cloned()
        .unwrap_or_else(|| repo.default_branch.clone());
    let commit = resolve_commit(repo, &reference).ok_or_else(not_found)?;
    let (path, sha) = license_file(repo, &commit).ok_or_else(not_found)?;
    let mut value = crate::contents_api::file_json(&base, org, repo, &reference, &path, &sha);
    value["license"] = license_json(&base, detect(repo, &sha));
    Ok(json_response(StatusCode::OK, &value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licenses_are_recognised_by_their_phrases() {
        let key = |text: &str| classify(text).map(|k| k.key);
        assert_eq!(
            key("MIT License\n\nPermission is hereby granted, free of charge, to any person\nobtaining a copy of this software"),
            Some("mit")
        );
        assert_eq!(
            key("                                 Apache License\n                           Version 2.0, January 2004"),
            Some("apache-2.0")
        );
        assert_eq!(
            key("GNU GENERAL PUBLIC LICENSE\n Version 3, 29 June 2007"),
            Some("gpl-3.0")
        );
        assert_eq!(
            key("Redistribution and use in source and binary forms ... 3. Neither the name of"),
            Some("bsd-3-clause")
        );
        assert_eq!(
            key("Mozilla Public License Version 2.0\n=================================="),
            Some("mpl-2.0")
        );
        assert_eq!(key("All rights reserved. Ask us."), None);
        let other = license_json("http://x", None);
        assert_eq!(other["spdx_id"], "NOASSERTION");
        assert_eq!(other["node_id"], "MDc6TGljZW5zZTA=");
        assert_eq!(
            license_json("http://x", Some(&MIT))["node_id"],
            "MDc6TGljZW5zZTEz"
        );
    }
}
