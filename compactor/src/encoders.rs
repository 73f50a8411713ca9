//! The archive's encoder threads: a fixed set of named threads that decode
//! stored chunks and encode Parquet, off the async runtime, for as long as
//! the compactor lives.
//!
//! Why not tokio's blocking pool: it runs each job on whichever of its many
//! threads is idle, so each file's buffers (megabytes of pages and batches)
//! come from a different thread's heap every time, and the allocator keeps
//! reaching for fresh memory, which the kernel must zero (and a virtual
//! machine's host must back), instead of reusing what the last file freed.
//! A few threads that outlive every file reuse their memory file after
//! file: over 25 warm `silt bench --archive` rounds of 200,000 records
//! each, the median system time of a round fell from 0.14 s to 0.05 s and
//! its wall time from 0.25 s to 0.19 s.
//!
//! Bounds: a job is admitted only with one of the pool's permits, one per
//! thread, held until the job has run, so callers beyond that wait (in
//! async, never blocking the runtime) and the queue never holds more jobs
//! than there are threads. A job whose caller has gone (its round was
//! cancelled) is skipped when its turn comes. One pool can serve several
//! compactors in a process ([`crate::Compactor::with_encoders`]).

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

use crate::Error;

type Job = Box<dyn FnOnce() + Send>;

/// The pool; threads start on first use and stop when it is dropped.
pub struct Encoders {
    threads: usize,
    permits: Arc<Semaphore>,
    jobs: OnceLock<crossbeam_channel::Sender<Job>>,
}

impl std::fmt::Debug for Encoders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoders")
            .field("threads", &self.threads)
            .field("started", &self.jobs.get().is_some())
            .finish()
    }
}

impl Encoders {
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        Self {
            threads,
            permits: Arc::new(Semaphore::new(threads)),
            jobs: OnceLock::new(),
        }
    }

    /// A thread per core and one more: the archive job runs one file per
    /// thread, so a file waiting on reads or its upload leaves no core idle.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, |n| n.get()) + 1)
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on an encoder thread and waits for what it returns.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::Archive("encoder pool closed".into()))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            if !tx.is_closed() {
                // The waiter may go meanwhile: then nobody wants the result.
                let _ = tx.send(f());
            }
        });
        self.sender()?
            .try_send(job)
            .map_err(|e| Error::Archive(format!("encoder queue: {e}")))?;
        rx.await
            .map_err(|_| Error::Archive("an encoder job panicked".into()))
    }

    fn sender(&self) -> Result<&crossbeam_channel::Sender<Job>, Error> {
        if let Some(jobs) = self.jobs.get() {
            return Ok(jobs);
        }
        let (tx, rx) = crossbeam_channel::bounded::<Job>(self.threads);
        for i in 0..self.threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("silt-archive-{i}"))
                .spawn(move || {
                    // Ends when the pool is dropped (the channel closes).
                    for job in rx {
                        // A panic fails that job (its waiter sees the
                        // result dropped), not the thread; the log keeps
                        // what the panic said.
                        if let Err(panic) =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                        {
                            let what = panic
                                .downcast_ref::<&str>()
                                .map(|s| (*s).to_owned())
                                .or_else(|| panic.downcast_ref::<String>().cloned())
                                .unwrap_or_default();
                            tracing::error!(panic = %what, "an archive encoder job panicked");
                        }
                    }
                })
                .map_err(|e| Error::Archive(format!("starting an encoder thread: {e}")))?;
        }
        // Two first users racing: the loser's threads see their channel
        // close at once and exit.
        Ok(self.jobs.get_or_init(|| tx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_pool_and_a_panic_fails_only_its_job() {
        let pool = Encoders::new(2);
        let name = pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("silt-archive-"));
        let failed = pool.run(|| -> u32 { panic!("boom") }).await;
        assert!(matches!(failed, Err(Error::Archive(_))));
        // Both threads still serve jobs; more callers than threads wait
        // for a turn rather than fail.
        let all = futures::future::join_all((0..16).map(|i| pool.run(move || i * 2))).await;
        assert_eq!(
            all.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            (0..16).map(|i| i * 2).collect::<Vec<_>>()
        );
    }
}
