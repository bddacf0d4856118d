//! "Do, remember how to undo": a multi-step operation pushes an undo step after each
//! step that succeeded; on failure the steps run in reverse, and the original error is
//! what the user sees.

use std::future::Future;
use std::pin::Pin;

type Step<'a> = (
    String,
    Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>,
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
        F: Future<Output = Result<(), String>> + Send + 'a,
    {
        self.steps.push((what.into(), Box::pin(step)));
    }

    /// Runs every undo step, newest first, logging (not returning) their failures: the
    /// error that made us roll back is the one that matters.
    pub async fn rollback(self) {
        for (what, step) in self.steps.into_iter().rev() {
            if let Err(e) = step.await {
                tracing::warn!("rollback: {what}: {e}");
            }
        }
    }

    /// The operation succeeded: forget the undo steps.
    pub fn commit(self) {}
}
