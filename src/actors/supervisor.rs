//! The supervisor: drains the bounded submit queue and routes requests to a device group
//! (one CPU group today), spawns each group's actors linked to itself, and restarts a failed
//! actor after a backoff, within a restart budget. Requests the failed actor held end with
//! one `Error` event through their replies; the others go on. Past the budget the runtime
//! stops taking work.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam::channel::Receiver;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::runtime::config::RestartPolicy;
use crate::runtime::faults::Component;
use crate::runtime::stats::{add, sub};
use crate::runtime::stream::ErrorKind;

use super::decoder::Decoder;
use super::evictor::{Evictor, EvictorMsg};
use super::fetcher::{Fetcher, FetcherMsg};
use super::job::Job;
use super::merger::{Merger, MergerMsg};
use super::{DeviceCtx, Links};

/// Messages of the supervisor.
pub(crate) enum SupervisorMsg {
    /// Requests are waiting in the submit queue.
    Poke,
    /// Start `Component` again (after its backoff).
    Restart(Component),
}

/// What the supervisor starts from.
pub(crate) struct SupervisorArgs {
    pub ctx: Arc<DeviceCtx>,
    pub submit: Receiver<Job>,
    /// Cleared by the supervisor before it drains the queue (so pokes coalesce).
    pub poked: Arc<AtomicBool>,
    /// Cleared when the restart budget is spent.
    pub accepting: Arc<AtomicBool>,
    pub restart: RestartPolicy,
}

pub(crate) struct SupervisorState {
    args: SupervisorArgs,
    ids: HashMap<ActorId, Component>,
    restarts: VecDeque<Instant>,
}

pub(crate) struct Supervisor;

impl Supervisor {
    async fn start(
        me: &ActorRef<SupervisorMsg>,
        st: &mut SupervisorState,
        c: Component,
    ) -> Result<(), ActorProcessingErr> {
        let ctx = &st.args.ctx;
        let sup: ActorCell = me.get_cell();
        let name = |s: &str| Some(format!("{}-{s}", ctx.prefix));
        let cell = match c {
            Component::Fetcher => {
                let (a, _) = Actor::spawn_linked(name("fetcher"), Fetcher, Arc::clone(ctx), sup).await?;
                ctx.links.set_fetcher(a.clone());
                a.get_cell()
            }
            Component::Merger => {
                let (a, _) = Actor::spawn_linked(name("merger"), Merger, Arc::clone(ctx), sup).await?;
                ctx.links.set_merger(a.clone());
                a.get_cell()
            }
            Component::Decoder | Component::DecodeLoop => {
                let (a, _) = Actor::spawn_linked(name("decoder"), Decoder, Arc::clone(ctx), sup).await?;
                ctx.links.set_decoder(a.clone());
                a.get_cell()
            }
            Component::Evictor => {
                let (a, _) = Actor::spawn_linked(name("evictor"), Evictor, Arc::clone(ctx), sup).await?;
                ctx.links.set_evictor(a.clone());
                a.get_cell()
            }
        };
        st.ids.insert(cell.get_id(), c);
        Ok(())
    }

    fn clear_link(ctx: &DeviceCtx, c: Component) {
        match c {
            Component::Fetcher => {
                Links::clear(&ctx.links.fetcher);
            }
            Component::Merger => {
                Links::clear(&ctx.links.merger);
            }
            Component::Decoder | Component::DecodeLoop => {
                Links::clear(&ctx.links.decoder);
            }
            Component::Evictor => {
                Links::clear(&ctx.links.evictor);
            }
        }
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        me: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut st = SupervisorState { args, ids: HashMap::new(), restarts: VecDeque::new() };
        for c in [Component::Evictor, Component::Decoder, Component::Merger, Component::Fetcher] {
            Supervisor::start(&me, &mut st, c).await?;
        }
        Ok(st)
    }

    async fn handle(
        &self,
        me: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let ctx = Arc::clone(&st.args.ctx);
        match msg {
            SupervisorMsg::Poke => {
                st.args.poked.store(false, Ordering::Release);
                while let Ok(job) = st.args.submit.try_recv() {
                    sub(&ctx.metrics.submit_depth, 1);
                    if !st.args.accepting.load(Ordering::Acquire) {
                        job.fail(ErrorKind::Shutdown, "the runtime stopped taking work");
                    } else if job.cancelled() {
                        job.end_cancelled();
                    } else {
                        ctx.links.fetcher(FetcherMsg::Fetch(job.at("fetcher")));
                    }
                }
            }
            SupervisorMsg::Restart(c) => {
                if ctx.metrics.shutting_down.load(Ordering::Acquire) {
                    return Ok(());
                }
                if let Err(e) = Supervisor::start(&me, st, c).await {
                    // The old actor's name may not be free yet: try again after the backoff.
                    log::warn!("{}: restarting {c:?} failed ({e}); retrying", ctx.prefix);
                    let d = st.args.restart.backoff;
                    let me = me.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(d).await;
                        let _ = me.cast(SupervisorMsg::Restart(c));
                    });
                    return Ok(());
                }
                add(&ctx.metrics.restarts, 1);
                match c {
                    Component::Merger => ctx.links.evictor(EvictorMsg::Reset),
                    Component::Evictor => ctx.links.merger(MergerMsg::Resync),
                    _ => {}
                }
                log::info!("{}: {c:?} restarted", ctx.prefix);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<SupervisorMsg>,
        evt: SupervisionEvent,
        st: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match evt {
            SupervisionEvent::ActorFailed(cell, e) => (cell, e.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, r) => (cell, r.unwrap_or_else(|| "stopped".into())),
            _ => return Ok(()),
        };
        let Some(c) = st.ids.remove(&cell.get_id()) else { return Ok(()) };
        let ctx = Arc::clone(&st.args.ctx);
        Supervisor::clear_link(&ctx, c);
        if ctx.metrics.shutting_down.load(Ordering::Acquire) {
            return Ok(());
        }
        log::error!("{}: {c:?} failed: {why}", ctx.prefix);
        let now = Instant::now();
        let policy = st.args.restart.clone();
        while st.restarts.front().is_some_and(|t| now.duration_since(*t) > policy.window) {
            st.restarts.pop_front();
        }
        st.restarts.push_back(now);
        if st.restarts.len() as u32 > policy.max_restarts {
            log::error!(
                "{}: more than {} restarts within {:?}; the runtime stops taking work",
                ctx.prefix,
                policy.max_restarts,
                policy.window
            );
            st.args.accepting.store(false, Ordering::Release);
            return Ok(());
        }
        let n = st.restarts.len().saturating_sub(1).min(10) as u32;
        let delay = policy.backoff * 2u32.pow(n);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = me.cast(SupervisorMsg::Restart(c));
        });
        Ok(())
    }
}
