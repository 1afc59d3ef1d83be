//! Thin gRPC adapters, one file per service. Every handler reads the same way: the shared
//! [`Envelope`] proves the caller and bounds the call, then the handler converts the request
//! (`convert`), makes one call into the core (`crate::gateway`) and converts the answer back.
//! `status` is the one place a core error becomes a `tonic::Status`.
//!
//! Nothing here talks to WorkOS: the adapters know only the core.

mod access;
pub(crate) mod convert;
mod envelope;
mod invitation;
mod organization;
mod portal;
mod setup;
mod status;

pub use access::AccessService;
pub use envelope::Envelope;
pub use invitation::InvitationService;
pub use organization::OrganizationService;
pub use portal::PortalService;
pub use setup::SetupService;
pub use status::decode_failures_are_invalid_arguments;

/// What every generated service method returns.
type RpcResult<T> = Result<tonic::Response<T>, tonic::Status>;
