//! Fault injection for tests: make an actor (or the decode loop) panic at its next message,
//! make fetches of matching sources stall or fail. Inert unless a [`Faults`] is put in
//! [`super::RuntimeConfig::faults`].

use std::time::Duration;

use parking_lot::Mutex;

/// A component a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// The fetcher (asks the store).
    Fetcher,
    /// The merger (docks and undocks).
    Merger,
    /// The decoder actor (feeds the decode loop).
    Decoder,
    /// The evictor (eviction policy).
    Evictor,
    /// The decode loop thread, at its next step.
    DecodeLoop,
}

#[derive(Default)]
struct State {
    panics: Vec<Component>,
    stall: Option<(String, Duration)>,
    fail: Option<String>,
}

/// Switchboard of injected faults; share it with `Arc`.
#[derive(Default)]
pub struct Faults {
    s: Mutex<State>,
}

impl Faults {
    /// No faults armed.
    pub fn new() -> Faults {
        Faults::default()
    }

    /// `c` panics when it handles its next message (once).
    pub fn panic_next(&self, c: Component) {
        self.s.lock().panics.push(c);
    }

    /// Fetches whose source contains `pattern` sleep `d` first (until cleared).
    pub fn stall_fetches(&self, pattern: &str, d: Duration) {
        self.s.lock().stall = Some((pattern.to_string(), d));
    }

    /// Fetches whose source contains `pattern` fail (until cleared).
    pub fn fail_fetches(&self, pattern: &str) {
        self.s.lock().fail = Some(pattern.to_string());
    }

    /// Disarm everything.
    pub fn clear(&self) {
        *self.s.lock() = State::default();
    }

    /// Consume an armed panic for `c`.
    pub(crate) fn take_panic(&self, c: Component) -> bool {
        let mut s = self.s.lock();
        match s.panics.iter().position(|x| *x == c) {
            Some(i) => {
                s.panics.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// The stall and failure armed for a fetch of `source`.
    pub(crate) fn for_fetch(&self, source: &str) -> (Option<Duration>, bool) {
        let s = self.s.lock();
        let stall = s.stall.as_ref().filter(|(p, _)| source.contains(p.as_str())).map(|(_, d)| *d);
        let fail = s.fail.as_ref().is_some_and(|p| source.contains(p.as_str()));
        (stall, fail)
    }
}

/// Panic when a fault for `c` is armed in `faults`.
pub(crate) fn maybe_panic(faults: &Option<std::sync::Arc<Faults>>, c: Component) {
    if faults.as_ref().is_some_and(|f| f.take_panic(c)) {
        panic!("injected fault: {c:?} panics");
    }
}
