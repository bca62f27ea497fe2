//! One error type for the engine: every variant says what went wrong and,
//! where there is one, which file.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CantorError {
    /// Reading or writing a file failed at the operating-system level.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A music file (MIDI, MusicXML, JSB JSON) does not parse or does not fit.
    #[error("{}: {message}", path.display())]
    Music { path: PathBuf, message: String },
    /// A model file or its card is unusable.
    #[error("{}: {message}", path.display())]
    Model { path: PathBuf, message: String },
    /// A request that cannot be carried out (bad mask, empty window, …).
    #[error("{0}")]
    Input(String),
    /// The tensor library failed.
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A run was cancelled by its caller (a newer request superseded it).
    #[error("cancelled")]
    Cancelled,
}

impl CantorError {
    pub fn input(message: impl Into<String>) -> CantorError {
        CantorError::Input(message.into())
    }

    pub fn music(path: &Path, message: impl Into<String>) -> CantorError {
        CantorError::Music {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub fn model(path: &Path, message: impl Into<String>) -> CantorError {
        CantorError::Model {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub fn io(path: &Path, source: std::io::Error) -> CantorError {
        CantorError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T, E = CantorError> = std::result::Result<T, E>;
