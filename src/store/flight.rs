//! Coordination for the store: single-flight (concurrent callers for one key share one fetch)
//! and a counting semaphore bounding concurrent downloads. Waiting blocks on a condition
//! variable; nothing spins.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

/// One fetch in progress; its outcome once the leader publishes it.
struct Flight<T> {
    outcome: Mutex<Option<Result<T>>>,
    done: Condvar,
}

/// In-progress fetches by key.
pub(crate) struct Flights<K, T> {
    map: Mutex<HashMap<K, Arc<Flight<T>>>>,
}

/// What a caller of [`Flights::join`] is.
pub(crate) enum Role<'a, K: Hash + Eq + Clone, T: Clone> {
    /// First for this key: do the work, then [`Leader::finish`].
    Leader(Leader<'a, K, T>),
    /// Someone else is doing it: [`Follower::wait`] for their outcome.
    Follower(Follower<T>),
}

impl<K: Hash + Eq + Clone, T: Clone> Flights<K, T> {
    /// No fetch in progress.
    pub fn new() -> Self {
        Flights { map: Mutex::new(HashMap::new()) }
    }

    /// Lead the fetch for `key`, or follow the one already running.
    pub fn join(&self, key: K) -> Role<'_, K, T> {
        let mut map = self.map.lock();
        if let Some(f) = map.get(&key) {
            return Role::Follower(Follower { flight: f.clone() });
        }
        let flight = Arc::new(Flight { outcome: Mutex::new(None), done: Condvar::new() });
        map.insert(key.clone(), flight.clone());
        Role::Leader(Leader { flights: self, key, flight, finished: false })
    }

    /// Fetches in progress.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }
}

/// The caller doing the work for a key. Dropping it unfinished (a panic) gives followers an
/// error instead of leaving them waiting.
pub(crate) struct Leader<'a, K: Hash + Eq + Clone, T: Clone> {
    flights: &'a Flights<K, T>,
    key: K,
    flight: Arc<Flight<T>>,
    finished: bool,
}

impl<K: Hash + Eq + Clone, T: Clone> Leader<'_, K, T> {
    /// Publish the outcome to every follower and retire the key (a later caller leads a new
    /// fetch). Returns the outcome to the leader itself.
    pub fn finish(mut self, outcome: Result<T>) -> Result<T> {
        let shared = match &outcome {
            Ok(v) => Ok(v.clone()),
            Err(e) => Err(duplicate(e)),
        };
        self.publish(shared);
        outcome
    }

    fn publish(&mut self, shared: Result<T>) {
        self.finished = true;
        self.flights.map.lock().remove(&self.key);
        *self.flight.outcome.lock() = Some(shared);
        self.flight.done.notify_all();
    }
}

impl<K: Hash + Eq + Clone, T: Clone> Drop for Leader<'_, K, T> {
    fn drop(&mut self) {
        if !self.finished {
            self.publish(Err(Error::store("store", "the fetch this call was waiting on panicked")));
        }
    }
}

/// A caller waiting on another's fetch.
pub(crate) struct Follower<T> {
    flight: Arc<Flight<T>>,
}

impl<T: Clone> Follower<T> {
    /// Block until the leader finishes; its outcome (errors copied).
    pub fn wait(self) -> Result<T> {
        let mut g = self.flight.outcome.lock();
        loop {
            if let Some(o) = &*g {
                return match o {
                    Ok(v) => Ok(v.clone()),
                    Err(e) => Err(duplicate(e)),
                };
            }
            self.flight.done.wait(&mut g);
        }
    }
}

/// A copy of a store error for another waiter (`Error` is not `Clone`: it may hold an
/// `io::Error`, copied here by kind and message).
fn duplicate(e: &Error) -> Error {
    match e {
        Error::Io { path, source } => {
            Error::Io { path: path.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
        }
        Error::Store { source, reason } => Error::Store { source: source.clone(), reason: reason.clone() },
        Error::DigestMismatch { source, expected, found } => {
            Error::DigestMismatch { source: source.clone(), expected: expected.clone(), found: found.clone() }
        }
        Error::Timeout { source, reason } => {
            Error::Timeout { source: source.clone(), reason: reason.clone() }
        }
        Error::InvalidArgument { name, reason } => Error::invalid(name.clone(), reason.clone()),
        other => Error::store("store", other.to_string()),
    }
}

/// A counting semaphore; [`Semaphore::acquire`] blocks until a permit is free.
pub(crate) struct Semaphore {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A held permit, returned on drop.
pub(crate) struct Permit<'a> {
    sem: &'a Semaphore,
}

impl Semaphore {
    /// `permits` permits, all free.
    pub fn new(permits: usize) -> Semaphore {
        Semaphore { free: Mutex::new(permits), freed: Condvar::new() }
    }

    /// Take a permit, waiting for one to be returned if none is free.
    pub fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock();
        while *free == 0 {
            self.freed.wait(&mut free);
        }
        *free -= 1;
        Permit { sem: self }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.sem.free.lock() += 1;
        self.sem.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;

    #[test]
    fn one_leader_many_followers_share_the_outcome() {
        let flights: Flights<u32, u64> = Flights::new();
        let leaders = AtomicUsize::new(0);
        let barrier = Barrier::new(8);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let role = flights.join(7);
                        barrier.wait(); // every thread has joined before the leader finishes
                        match role {
                            Role::Leader(l) => {
                                leaders.fetch_add(1, Ordering::SeqCst);
                                l.finish(Ok(42))
                            }
                            Role::Follower(f) => f.wait(),
                        }
                    })
                })
                .collect();
            for h in handles {
                assert_eq!(h.join().unwrap().unwrap(), 42);
            }
        });
        assert_eq!(leaders.load(Ordering::SeqCst), 1);
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn errors_reach_followers_and_a_dropped_leader_releases_them() {
        let flights: Flights<u32, u64> = Flights::new();
        let Role::Leader(l) = flights.join(1) else { panic!("first caller leads") };
        let Role::Follower(f) = flights.join(1) else { panic!("second follows") };
        let e = l.finish(Err(Error::store("http://h/a", "HTTP 500")));
        assert_eq!(e.unwrap_err().to_string(), "http://h/a: HTTP 500");
        assert_eq!(f.wait().unwrap_err().to_string(), "http://h/a: HTTP 500");

        let Role::Leader(l) = flights.join(2) else { panic!("leads") };
        let Role::Follower(f) = flights.join(2) else { panic!("follows") };
        drop(l);
        assert!(f.wait().unwrap_err().to_string().contains("panicked"));
        assert!(matches!(flights.join(2), Role::Leader(_)), "the key is free again");
    }

    #[test]
    fn semaphore_bounds_holders() {
        let sem = Semaphore::new(2);
        let (now, max) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    let _p = sem.acquire();
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    now.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert!(max.load(Ordering::SeqCst) <= 2);
    }
}
