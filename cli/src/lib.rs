//! The `plumb` CLI: control-plane commands, migrations, and (with the `dev` feature) `plumb dev`
//! (everything in one process) and `plumb sim` (the GitHub simulator on its own). The binary is
//! a thin shell over this library so tests drive the same code.

pub mod access;
pub mod activity;
pub mod client;
pub mod commands;
pub mod config;
#[cfg(feature = "dev")]
pub mod dev;
pub mod login;
pub mod output;
#[cfg(feature = "dev")]
pub mod pg;
pub mod resources;
#[cfg(feature = "dev")]
pub mod sim;
#[cfg(feature = "dev")]
pub mod stack;

/// Rule types and profiles shipped in `rules/`, embedded so `plumb dev` runs from anywhere.
pub mod shipped {
    /// Every rule type Plumbline ships (`rules/rule-types`); the profiles below use some.
    pub const RULE_TYPES: &[(&str, &str)] = &[
        (
            "branch_protection_enabled",
            include_str!("../../rules/rule-types/github/branch_protection_enabled.yaml"),
        ),
        (
            "secret_scanning_enabled",
            include_str!("../../rules/rule-types/github/secret_scanning_enabled.yaml"),
        ),
        (
            "dependabot_configured",
            include_str!("../../rules/rule-types/github/dependabot_configured.yaml"),
        ),
        (
            "default_workflow_permissions",
            include_str!("../../rules/rule-types/github/default_workflow_permissions.yaml"),
        ),
        (
            "security_policy_present",
            include_str!("../../rules/rule-types/github/security_policy_present.yaml"),
        ),
    ];
    /// The profile `plumb dev` and the tests start with (the repository-security baseline is
    /// opt-in: apply `rules/profiles/github/repo-security.yaml`).
    pub const PROFILES: &[(&str, &str)] = &[(
        "branch-protection",
        include_str!("../../rules/profiles/github/branch-protection.yaml"),
    )];
}
