//! The `plumb` CLI: control-plane commands, migrations, and `plumb dev` (everything in one
//! process). The binary is a thin shell over this library so tests drive the same code.

pub mod client;
pub mod commands;
pub mod dev;
pub mod pg;
pub mod stack;

/// Rule types and profiles shipped in `rules/`, embedded so `plumb dev` runs from anywhere.
pub mod shipped {
    pub const RULE_TYPES: &[(&str, &str)] = &[(
        "branch_protection_enabled",
        include_str!("../../rules/rule-types/github/branch_protection_enabled.yaml"),
    )];
    pub const PROFILES: &[(&str, &str)] = &[("branch-protection", include_str!("../../rules/profiles/github/branch-protection.yaml"))];
}
