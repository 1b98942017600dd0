//! Clean-up that also runs when a test panics.

use std::future::Future;
use std::pin::Pin;

/// Holds an async clean-up (drop a database, delete queues). Call [`CleanupGuard::run`] at the
/// end of a test; if the test panics first, dropping the guard runs it on a thread of its own
/// (a runtime cannot be started from inside the test's runtime).
pub struct CleanupGuard {
    task: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl CleanupGuard {
    /// Arms the guard with `task`.
    pub fn new(task: impl Future<Output = ()> + Send + 'static) -> Self {
        CleanupGuard {
            task: Some(Box::pin(task)),
        }
    }

    /// Runs the clean-up now.
    pub async fn run(mut self) {
        if let Some(task) = self.task.take() {
            task.await;
        }
    }
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(task);
                }
            })
            .join();
        }
    }
}
