//! The one error type of the engine; its codes are the ABI's (see ABI.md).

/// Every failure the engine reports, with the stable numeric code of ABI.md.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("invalid checkpoint: {0}")]
    InvalidCheckpoint(String),
    #[error("invalid tokenizer: {0}")]
    InvalidTokenizer(String),
    #[error("vocabulary mismatch: {0}")]
    VocabMismatch(String),
    #[error("prompt too long: {0}")]
    PromptTooLong(String),
    #[error("context full: {0}")]
    ContextFull(String),
    #[error("invalid handle: {0}")]
    InvalidHandle(String),
    #[error("invalid UTF-8: {0}")]
    InvalidUtf8(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// A well-formed model file the engine does not run (a GGUF architecture or tensor type),
    /// refused from its header alone.
    #[error("unsupported model: {0}")]
    UnsupportedModel(String),
    /// A chat template that does not parse or render (a syntax error, its `raise_exception`),
    /// or a chat of messages on a model without one.
    #[error("chat template: {0}")]
    ChatTemplate(String),
}

impl EngineError {
    /// The negative code of ABI.md for this error.
    pub fn code(&self) -> i32 {
        match self {
            EngineError::InvalidArgument(_) => -1,
            EngineError::InvalidCheckpoint(_) => -2,
            EngineError::InvalidTokenizer(_) => -3,
            EngineError::VocabMismatch(_) => -4,
            EngineError::PromptTooLong(_) => -5,
            EngineError::ContextFull(_) => -6,
            EngineError::InvalidHandle(_) => -7,
            EngineError::InvalidUtf8(_) => -8,
            EngineError::Internal(_) => -9,
            EngineError::UnsupportedModel(_) => -10,
            EngineError::ChatTemplate(_) => -11,
        }
    }
}

impl From<candle_core::Error> for EngineError {
    fn from(err: candle_core::Error) -> Self {
        EngineError::Internal(format!("candle: {err}"))
    }
}

pub type Result<T> = std::result::Result<T, EngineError>;
