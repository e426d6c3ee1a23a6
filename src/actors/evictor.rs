//! The evictor: the eviction *policy* of a device. It hears what is docked, used and released,
//! and about memory pressure and ended rows, and tells the merger what to undock: disposable
//! adapters right after their last lease ends, keep-warm adapters least recently used first
//! under pressure, pinned adapters never. The merger undocks only what nobody holds.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::runtime::faults::{maybe_panic, Component};
use crate::runtime::Policy;
use crate::store::Digest;

use super::merger::MergerMsg;
use super::DeviceCtx;

/// Messages of the evictor.
pub(crate) enum EvictorMsg {
    /// The merger docked an adapter.
    Docked { digest: Digest, policy: Policy },
    /// The merger leased it to a request.
    Used(Digest),
    /// A hold on it ended (a lease dropped, or a request ended before its lease).
    Released(Digest),
    /// The merger undocked it.
    Undocked(Digest),
    /// The merger cannot fit a request: `need` bytes are missing.
    Pressure { need: u64 },
    /// A row ended and gave its KV pages back.
    RowEnded,
    /// The merger was restarted and knows nothing docked: forget everything.
    Reset,
}

struct Entry {
    policy: Policy,
    last_use: u64,
}

pub(crate) struct EvictorState {
    ctx: Arc<DeviceCtx>,
    entries: HashMap<Digest, Entry>,
    tick: u64,
}

pub(crate) struct Evictor;

impl Actor for Evictor {
    type Msg = EvictorMsg;
    type State = EvictorState;
    type Arguments = Arc<DeviceCtx>;

    async fn pre_start(
        &self,
        _me: ActorRef<EvictorMsg>,
        ctx: Arc<DeviceCtx>,
    ) -> Result<EvictorState, ActorProcessingErr> {
        Ok(EvictorState { ctx, entries: HashMap::new(), tick: 0 })
    }

    async fn handle(
        &self,
        _me: ActorRef<EvictorMsg>,
        msg: EvictorMsg,
        st: &mut EvictorState,
    ) -> Result<(), ActorProcessingErr> {
        maybe_panic(&st.ctx.faults, Component::Evictor);
        st.tick += 1;
        let tick = st.tick;
        match msg {
            EvictorMsg::Docked { digest, policy } => {
                st.entries.insert(digest, Entry { policy, last_use: tick });
            }
            EvictorMsg::Used(d) => {
                if let Some(e) = st.entries.get_mut(&d) {
                    e.last_use = tick;
                }
            }
            EvictorMsg::Released(d) => {
                if st.entries.get(&d).is_some_and(|e| e.policy == Policy::Disposable) {
                    st.ctx.links.merger(MergerMsg::Undock(vec![d]));
                }
            }
            EvictorMsg::Undocked(d) => {
                st.entries.remove(&d);
            }
            EvictorMsg::Pressure { need } => {
                let mut c: Vec<(u64, Digest)> = st
                    .entries
                    .iter()
                    .filter(|(_, e)| e.policy != Policy::Pinned)
                    .map(|(d, e)| (e.last_use, *d))
                    .collect();
                c.sort_unstable_by_key(|(t, _)| *t);
                let candidates = c.into_iter().map(|(_, d)| d).collect();
                st.ctx.links.merger(MergerMsg::Relieve { candidates, need });
            }
            EvictorMsg::RowEnded => st.ctx.links.merger(MergerMsg::MemoryFreed),
            EvictorMsg::Reset => st.entries.clear(),
        }
        Ok(())
    }
}
