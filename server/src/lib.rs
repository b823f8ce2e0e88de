//! # baton-server
//!
//! The sync server: it merges task documents from devices, stores them durably, runs
//! escalation, and serves the admin API. This crate currently exposes the template catalogue the
//! server will serve; the network and storage layers build on it.

use baton_core::TemplateRegistry;

/// The templates a fresh server starts with.
pub fn default_templates() -> TemplateRegistry {
    TemplateRegistry::shipped()
}
