//! Docked adapters and the leases requests hold on them.

use std::borrow::Borrow;
use std::sync::Arc;

use crate::lora::LoraAdapter;
use crate::memory::Reservation;
use crate::runtime::Policy;
use crate::store::Digest;

use super::evictor::EvictorMsg;
use super::DeviceCtx;

/// An adapter docked on a device: its weights in compute form and the ledger bytes they
/// hold. Freed (and its bytes returned) when the last `Arc` goes: the merger's table entry
/// and the leases.
pub(crate) struct Docked {
    /// Content identity (the store digest, or a composite's key).
    pub digest: Digest,
    /// For messages.
    pub label: String,
    pub adapter: LoraAdapter,
    pub policy: Policy,
    pub reservation: Reservation,
}

/// A request's hold on a docked adapter. While any lease lives the adapter is not undocked.
/// Dropping it (the decode loop does, when the row ends) tells the evictor.
pub(crate) struct Lease {
    entry: Option<Arc<Docked>>,
    ctx: Arc<DeviceCtx>,
}

impl Lease {
    pub(crate) fn new(entry: Arc<Docked>, ctx: Arc<DeviceCtx>) -> Lease {
        Lease { entry: Some(entry), ctx }
    }
}

impl Borrow<LoraAdapter> for Lease {
    fn borrow(&self) -> &LoraAdapter {
        &self.entry.as_ref().expect("a live lease holds its entry").adapter
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(e) = self.entry.take() {
            let digest = e.digest;
            // Release the hold before telling the evictor, so the merger sees it gone.
            drop(e);
            self.ctx.links.evictor(EvictorMsg::Released(digest));
        }
    }
}
