//! "Do, remember how to undo": a multi-step operation pushes an undo step after each
//! step that succeeded; on failure the steps run in reverse, and the original error is
//! what the user sees, with whatever undoing it could not do.

use std::future::Future;
use std::pin::Pin;

use container_protocol::Failures;

use crate::error::ApiError;

type Step<'a> = (
    String,
    Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'a>>,
);

#[derive(Default)]
pub struct Undo<'a> {
    steps: Vec<Step<'a>>,
}

impl<'a> Undo<'a> {
    pub fn new() -> Self {
        Undo { steps: Vec::new() }
    }

    pub fn push<F>(&mut self, what: impl Into<String>, step: F)
    where
        F: Future<Output = Result<(), ApiError>> + Send + 'a,
    {
        self.steps.push((what.into(), Box::pin(step)));
    }

    /// Runs every undo step, newest first, going on past failures; returns `error`
    /// with the failures appended, so neither is lost.
    pub async fn rollback(self, error: ApiError) -> ApiError {
        let mut failed = Vec::new();
        for (what, step) in self.steps.into_iter().rev() {
            if let Err(e) = step.await {
                tracing::warn!("rollback: {what}: {e}");
                failed.push(e.context(what));
            }
        }
        if failed.is_empty() {
            error
        } else {
            ApiError::Undone(Box::new(Failures::with_undo(error, failed)))
        }
    }

    /// The operation succeeded: forget the undo steps.
    pub fn commit(self) {}
}
