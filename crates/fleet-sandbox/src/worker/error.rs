//! Why a worker's role could not set up or run a task.

/// Why a [`super::Role`] failed `initialize` or a task: the message the supervisor is told (a
/// task's failure becomes the work unit's error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RoleError {
    message: String,
}

impl RoleError {
    /// A failure saying `message`.
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// What the supervisor is told.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<String> for RoleError {
    fn from(message: String) -> Self {
        Self { message }
    }
}

impl From<&str> for RoleError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<std::io::Error> for RoleError {
    fn from(error: std::io::Error) -> Self {
        Self::new(error.to_string())
    }
}
