//! Plumbline's Sigstore verifier: the one crate that links sigstore-rs and oci-client.
//!
//! Every container image an enrolled repository publishes must carry a Sigstore signature made
//! by the right workflow. This crate answers the two questions that takes, and nothing else:
//! which signatures sit beside an image in its registry ([`Registry::signatures`], plus
//! [`Evidence::from_bundle_json`] for GitHub's attestations API), and whether one of them is a
//! valid signature over this image and by whom ([`verify`], pure CPU). What identity is the
//! right one is policy, decided by the caller from [`Verification::certificate`].

mod error;
mod evidence;
mod identity;
mod image;
pub mod registry;
mod tlog;
mod trust;
mod tuf;
mod verify;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::Error;
pub use evidence::{Evidence, EvidenceSource};
pub use identity::CertificateSummary;
pub use image::ImageRef;
pub use registry::{Registry, RegistryAuth, RegistryOptions};
pub use trust::TrustRoot;
pub use tuf::{TufError, TufSource, TufState};
pub use verify::{verify, Statement, Verification};
