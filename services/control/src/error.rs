use tonic::Status;

/// Control-plane errors, mapped to gRPC codes in one place.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("invalid document: {0}")]
    Invalid(#[from] plumbline_engine::EngineError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Precondition(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("store: {0}")]
    Store(#[from] plumbline_store::StoreError),
    #[error("github: {0}")]
    GitHub(#[from] plumbline_github::GitHubError),
    #[error("event bus: {0}")]
    Bus(#[from] plumbline_bus::BusError),
    #[error("sealed credentials: {0}")]
    Sealing(#[from] plumbline_runtime::sealed::SealError),
    #[error("{}", .0.describe())]
    Credential(#[from] plumbline_runtime::credentials::CredentialError),
}

/// The longest error message sent: it travels in a response header (`grpc-message`), and a
/// message quoting megabytes of a request would be refused by the client's HTTP/2 limits
/// instead of read.
const MAX_MESSAGE_CHARS: usize = 2048;

fn bounded(msg: String) -> String {
    if msg.chars().count() <= MAX_MESSAGE_CHARS {
        return msg;
    }
    let mut cut: String = msg.chars().take(MAX_MESSAGE_CHARS).collect();
    cut.push('…');
    cut
}

impl From<ControlError> for Status {
    fn from(e: ControlError) -> Status {
        use plumbline_github::GitHubError as G;
        use plumbline_runtime::credentials::CredentialError;
        use plumbline_store::StoreError as S;
        let msg = bounded(e.to_string());
        match e {
            ControlError::Invalid(_) | ControlError::InvalidArgument(_) => {
                Status::invalid_argument(msg)
            }
            ControlError::Precondition(_) => Status::failed_precondition(msg),
            ControlError::NotFound(_) => Status::not_found(msg),
            ControlError::Store(S::NotFound(_)) => Status::not_found(msg),
            ControlError::Store(S::Conflict(_)) => Status::already_exists(msg),
            ControlError::Store(S::Invalid(_)) => Status::invalid_argument(msg),
            ControlError::Store(s) if s.is_transient() => Status::unavailable(msg),
            ControlError::Store(_) => Status::internal(msg),
            ControlError::GitHub(G::Status { status: 404, .. }) => Status::not_found(msg),
            ControlError::GitHub(G::Status {
                status: 401 | 403, ..
            }) => Status::permission_denied(msg),
            ControlError::GitHub(g) if g.is_retryable() => Status::unavailable(msg),
            ControlError::GitHub(_) => Status::failed_precondition(msg),
            ControlError::Bus(_) => Status::unavailable(msg),
            // A key missing from the key file, or a stored value that does not open: the
            // operator's configuration or the data, never the caller's request.
            ControlError::Sealing(_) => Status::failed_precondition(msg),
            ControlError::Credential(c) if c.is_transient() => Status::unavailable(msg),
            ControlError::Credential(CredentialError::ProviderGone { .. }) => {
                Status::not_found(msg)
            }
            ControlError::Credential(_) => Status::failed_precondition(msg),
        }
    }
}
