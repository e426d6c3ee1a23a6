//! The fetcher: for each request, the bytes of every adapter it names — already docked
//! (pinned, nothing fetched) or asked of the runtime's shared store on a blocking task
//! (single-flight by digest, bounded downloads, RAM and disk caches). Hands the request on to
//! the merger, or ends it with a fetch error naming the adapter.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::runtime::faults::{maybe_panic, Component};
use crate::runtime::stream::ErrorKind;

use super::job::{Job, Part, Staged};
use super::merger::MergerMsg;
use super::DeviceCtx;

/// Messages of the fetcher.
pub(crate) enum FetcherMsg {
    /// Fetch what this request needs.
    Fetch(Job),
}

pub(crate) struct Fetcher;

impl Actor for Fetcher {
    type Msg = FetcherMsg;
    type State = Arc<DeviceCtx>;
    type Arguments = Arc<DeviceCtx>;

    async fn pre_start(
        &self,
        _me: ActorRef<FetcherMsg>,
        ctx: Arc<DeviceCtx>,
    ) -> Result<Arc<DeviceCtx>, ActorProcessingErr> {
        Ok(ctx)
    }

    async fn handle(
        &self,
        _me: ActorRef<FetcherMsg>,
        msg: FetcherMsg,
        ctx: &mut Arc<DeviceCtx>,
    ) -> Result<(), ActorProcessingErr> {
        let FetcherMsg::Fetch(job) = msg;
        let job = job.at("fetcher");
        maybe_panic(&ctx.faults, Component::Fetcher);
        if job.cancelled() {
            job.end_cancelled();
            return Ok(());
        }
        // What is docked already needs no bytes: pin it now.
        let mut parts: Vec<Option<Part>> = job
            .adapters
            .iter()
            .map(|(spec, _)| spec.digest.and_then(|d| ctx.docked(&d)).map(Part::Docked))
            .collect();
        if parts.iter().all(Option::is_some) {
            let parts = parts.into_iter().flatten().collect();
            ctx.links.merger(MergerMsg::Staged(Staged { job, parts }));
            return Ok(());
        }
        for ((spec, _), p) in job.adapters.iter().zip(&parts) {
            if let (None, Some(d)) = (p, spec.digest) {
                ctx.links.merger(MergerMsg::FetchStarted(d));
            }
        }
        let ctx = Arc::clone(ctx);
        tokio::task::spawn_blocking(move || {
            let specs: Vec<_> = job.adapters.iter().map(|(s, _)| s.clone()).collect();
            for (i, spec) in specs.iter().enumerate() {
                if parts[i].is_some() {
                    continue;
                }
                let shown = spec.source.display();
                if let Some(f) = &ctx.faults {
                    let (stall, fail) = f.for_fetch(&shown);
                    if let Some(d) = stall {
                        std::thread::sleep(d);
                    }
                    if fail {
                        let msg = format!("adapter {}: {shown}: injected fetch failure", spec.label);
                        if let Some(d) = spec.digest {
                            ctx.links.merger(MergerMsg::FetchFailed(d));
                        }
                        job.fail(ErrorKind::Fetch, msg);
                        return;
                    }
                }
                if job.cancelled() {
                    job.end_cancelled();
                    return;
                }
                match ctx.store.fetch(&spec.source, spec.digest) {
                    Ok(f) => parts[i] = Some(Part::Fetched(f)),
                    Err(e) => {
                        if let Some(d) = spec.digest {
                            ctx.links.merger(MergerMsg::FetchFailed(d));
                        }
                        let kind = ErrorKind::of(&e);
                        job.fail(kind, format!("adapter {}: {e}", spec.label));
                        return;
                    }
                }
            }
            let parts = parts.into_iter().map(|p| p.expect("every part fetched")).collect();
            ctx.links.merger(MergerMsg::Staged(Staged { job, parts }));
        });
        Ok(())
    }
}
