//! Password hashing with argon2id, off the async runtime and never oversubscribing the CPUs.
//!
//! At most `concurrency` hashes run at once and at most `queue` more wait; work beyond that is
//! refused at once ([`HashError::Busy`]) rather than left to time out, so a flood of logins
//! costs its senders a quick `rpc.unavailable` and everyone else no more than a bounded wait.
//!
//! Each hashing thread keeps its argon2 memory (`memory_kib`, 19 MiB by default) between hashes
//! instead of allocating and faulting it in anew for every password: that costs a page fault
//! per 4 KiB per hash, and the freed buffers stayed in the allocator anyway.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use tokio::sync::Semaphore;

/// Errors of the hasher.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// argon2 rejected its parameters or input.
    #[error("argon2: {0}")]
    Argon2(String),
    /// The hashing task could not run.
    #[error("hashing task failed: {0}")]
    Task(String),
    /// Every hashing thread is busy and the queue is full.
    #[error("password hashing is at capacity")]
    Busy,
}

/// The outcome of checking a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Wrong password (or no such account).
    Mismatch,
    /// Right password; the stored hash uses the current parameters.
    Match,
    /// Right password; here is a new hash with the current parameters to store.
    MatchRehashed(String),
}

/// Hashes and verifies passwords on the blocking pool, at most `concurrency` at a time.
#[derive(Clone)]
pub struct PasswordHasherPool {
    params: Params,
    permits: Arc<Semaphore>,
    /// Hashes admitted (running or waiting) and how many may be.
    admitted: Arc<AtomicUsize>,
    capacity: usize,
    /// A hash of a random password with the current parameters, verified against when the
    /// account does not exist, so unknown accounts cost the same time as known ones.
    dummy_hash: Arc<String>,
}

impl PasswordHasherPool {
    /// Creates the pool (`concurrency` hashes at once, `queue` more waiting); fails on
    /// parameters argon2 refuses.
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        concurrency: usize,
        queue: usize,
    ) -> Result<Self, HashError> {
        let params = Params::new(memory_kib, iterations, parallelism, None).map_err(argon_error)?;
        let dummy = hash_with(&params, uuid::Uuid::new_v4().as_bytes())?;
        let concurrency = concurrency.max(1);
        Ok(PasswordHasherPool {
            params,
            permits: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(AtomicUsize::new(0)),
            capacity: concurrency + queue,
            dummy_hash: Arc::new(dummy),
        })
    }

    /// Takes a place for one hash, or refuses at once with [`HashError::Busy`] when every
    /// thread is busy and the queue is full. The place is given back when the [`Admission`]
    /// is used or dropped.
    pub fn admit(&self) -> Result<Admission, HashError> {
        let taken = self
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(Admission { pool: self.clone() }),
            Err(_) => {
                metrics::counter!("authstack_password_hashing_refused_total").increment(1);
                Err(HashError::Busy)
            }
        }
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        self.admit()?.hash(password).await
    }

    /// Verifies `password` against `stored`; see [`Admission::verify`].
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<Verification, HashError> {
        self.admit()?.verify(password, stored).await
    }
}

/// A place in the hashing queue (see [`PasswordHasherPool::admit`]).
pub struct Admission {
    pool: PasswordHasherPool,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.pool.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    async fn run<T: Send + 'static>(
        self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let _permit = self
            .pool
            .permits
            .acquire()
            .await
            .map_err(|e| HashError::Task(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let before = thread_cpu_time();
            let out = job();
            metrics::histogram!("authstack_password_hash_cpu_seconds")
                .record(thread_cpu_time().saturating_sub(before).as_secs_f64());
            out
        })
        .await
        .map_err(|e| HashError::Task(e.to_string()))
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(self, password: String) -> Result<String, HashError> {
        let params = self.pool.params.clone();
        self.run(move || hash_with(&params, password.as_bytes()))
            .await?
    }

    /// Verifies `password` against `stored` (or against the dummy hash when `stored` is
    /// `None`, which always yields [`Verification::Mismatch`] after the same amount of work).
    pub async fn verify(
        self,
        password: String,
        stored: Option<String>,
    ) -> Result<Verification, HashError> {
        let params = self.pool.params.clone();
        let dummy = self.pool.dummy_hash.clone();
        self.run(move || {
            let known = stored.is_some();
            let hash = stored.unwrap_or_else(|| dummy.as_str().to_owned());
            let parsed = PasswordHash::new(&hash).map_err(argon_error)?;
            let stored_params = Params::try_from(&parsed).ok();
            let ok = password_matches(&parsed, password.as_bytes());
            if !ok || !known {
                return Ok(Verification::Mismatch);
            }
            let current = stored_params.is_some_and(|p| {
                p.m_cost() == params.m_cost()
                    && p.t_cost() == params.t_cost()
                    && p.p_cost() == params.p_cost()
            }) && parsed.algorithm.as_str() == "argon2id";
            if current {
                Ok(Verification::Match)
            } else {
                hash_with(&params, password.as_bytes()).map(Verification::MatchRehashed)
            }
        })
        .await?
    }
}

/// CPU time the calling thread has used: what one hash costs, whatever else the machine runs
/// meanwhile (`make bench` compares it with the raw argon2 cost).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given a valid pointer to.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

thread_local! {
    /// This thread's argon2 memory, kept between hashes (sized for the last parameters used).
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Computes `argon2` of `password` and `salt` into `out`, in this thread's reusable memory.
fn compute(
    argon2: &Argon2<'_>,
    blocks: usize,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), HashError> {
    BLOCKS.with_borrow_mut(|memory| {
        if memory.len() != blocks {
            *memory = vec![Block::default(); blocks];
        }
        argon2
            .hash_password_into_with_memory(password, salt, out, memory.as_mut_slice())
            .map_err(argon_error)
    })
}

/// An error of argon2 or its PHC encoding.
fn argon_error(e: impl std::fmt::Display) -> HashError {
    HashError::Argon2(e.to_string())
}

/// A new argon2id PHC string of `password` with a fresh random salt.
fn hash_with(params: &Params, password: &[u8]) -> Result<String, HashError> {
    let salt = Salt::generate();
    let mut out = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    compute(&argon2, params.block_count(), password, &salt, &mut out)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(argon_error)?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(argon_error)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the stored PHC hash (its own algorithm, version and
/// parameters; constant-time comparison of the outputs).
fn password_matches(stored: &PasswordHash, password: &[u8]) -> bool {
    let check = || -> Result<bool, HashError> {
        let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
            return Ok(false);
        };
        let params = Params::try_from(stored).map_err(argon_error)?;
        let algorithm = Algorithm::try_from(stored.algorithm.as_str()).map_err(argon_error)?;
        let version = match stored.version {
            Some(v) => Version::try_from(v).map_err(argon_error)?,
            None => Version::default(),
        };
        let mut out = vec![0u8; expected.len()];
        let argon2 = Argon2::new(algorithm, version, params.clone());
        compute(&argon2, params.block_count(), password, salt, &mut out)?;
        Ok(Output::new(&out).is_ok_and(|computed| &computed == expected))
    };
    check().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(m: u32, t: u32) -> PasswordHasherPool {
        PasswordHasherPool::new(m, t, 1, 2, 8).unwrap()
    }

    #[test]
    fn thread_cpu_time_counts_this_threads_work_only() {
        let before = thread_cpu_time();
        let params = Params::new(19_456, 2, 1, None).unwrap();
        hash_with(&params, b"a password").unwrap();
        let hashing = thread_cpu_time() - before;
        assert!(hashing > Duration::from_millis(1), "{hashing:?}");
        // Sleeping costs no CPU.
        let before = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(50));
        assert!(thread_cpu_time() - before < Duration::from_millis(20));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_places_come_back() {
        let p = PasswordHasherPool::new(8_192, 1, 1, 1, 1).unwrap();
        let running = p.admit().unwrap();
        let waiting = p.admit().unwrap();
        assert!(matches!(p.admit(), Err(HashError::Busy)));
        drop(waiting);
        let again = p.admit().unwrap();
        assert!(again.hash("pw-pw-pw-pw".into()).await.is_ok());
        drop(running);
        assert!(p.verify("x".into(), None).await.is_ok());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_that_verify() {
        let p = pool(19_456, 2);
        let hash = p.hash("correct horse".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert_eq!(
            p.verify("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap(),
            Verification::Match
        );
        assert_eq!(
            p.verify("wrong".into(), Some(hash)).await.unwrap(),
            Verification::Mismatch
        );
    }

    #[test]
    fn the_reused_memory_agrees_with_the_argon2_crates_own_hasher_and_verifier() {
        use argon2::{PasswordHasher, PasswordVerifier};
        // Different sizes in turn on one thread: the kept memory is resized, never stale.
        for (m, t, p) in [(19_456, 2, 1), (8_192, 1, 2), (19_456, 2, 1), (4_096, 3, 4)] {
            let params = Params::new(m, t, p, None).unwrap();
            let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
            // Ours, checked by the crate's verifier.
            let ours = hash_with(&params, b"correct horse").unwrap();
            let parsed = PasswordHash::new(&ours).unwrap();
            assert!(
                reference.verify_password(b"correct horse", &parsed).is_ok(),
                "{ours}"
            );
            assert!(reference.verify_password(b"wrong", &parsed).is_err());
            // The crate's hash, checked by ours.
            let theirs = reference
                .hash_password(b"battery staple")
                .unwrap()
                .to_string();
            let parsed = PasswordHash::new(&theirs).unwrap();
            assert!(password_matches(&parsed, b"battery staple"), "{theirs}");
            assert!(!password_matches(&parsed, b"battery stapler"));
        }
    }

    #[tokio::test]
    async fn unknown_accounts_never_match() {
        let p = pool(8_192, 1);
        assert_eq!(
            p.verify("anything".into(), None).await.unwrap(),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn changed_parameters_trigger_a_rehash_on_login() {
        let old = pool(8_192, 1);
        let hash = old.hash("pw-pw-pw-pw".into()).await.unwrap();
        let new = pool(19_456, 2);
        match new.verify("pw-pw-pw-pw".into(), Some(hash)).await.unwrap() {
            Verification::MatchRehashed(h) => assert!(h.contains("m=19456,t=2,p=1"), "{h}"),
            other => panic!("expected a rehash, got {other:?}"),
        }
    }
}
