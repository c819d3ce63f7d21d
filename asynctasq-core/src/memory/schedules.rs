//! The in-memory driver's schedules: each one's last slot and pause mark, claimed under the
//! store's one lock with the slot's task, as a database does in one transaction.

use super::MemoryDriver;
use crate::driver::{Capability, Driver, ScheduleState};
use crate::envelope::{Envelope, UnixMillis, validate_queue_name};
use crate::error::DriverError;

/// What the store keeps of one schedule.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Kept {
    pub(super) last_slot: Option<UnixMillis>,
    pub(super) paused: bool,
}

impl MemoryDriver {
    fn schedules_supported(&self) -> Result<(), DriverError> {
        if self.supports(Capability::ScheduleClaims) {
            Ok(())
        } else {
            Err(DriverError::Unsupported("schedule claims (the backend cannot advance a schedule and store its task in one step)"))
        }
    }

    /// [`Driver::claim_slot`](crate::Driver::claim_slot).
    pub(super) fn claim(&self, name: &str, queue: &str, slot: UnixMillis, task: Option<&Envelope>) -> Result<bool, DriverError> {
        self.schedules_supported()?;
        validate_queue_name(queue)?;
        let now = self.inner.clock.now();
        let mut state = self.lock();
        let kept = state.schedules.get(name).copied().unwrap_or_default();
        if kept.paused || kept.last_slot.is_some_and(|last| last >= slot) {
            return Ok(false);
        }
        if let Some(task) = task {
            self.store(&mut state, std::slice::from_ref(task), now)?;
        }
        state.schedules.insert(name.to_owned(), Kept { last_slot: Some(slot), paused: false });
        drop(state);
        self.inner.notify.notify_waiters();
        Ok(true)
    }

    /// [`Driver::schedules`](crate::Driver::schedules).
    pub(super) fn schedule_states(&self) -> Vec<ScheduleState> {
        if self.schedules_supported().is_err() {
            return Vec::new();
        }
        let state = self.lock();
        state.schedules.iter().map(|(name, k)| ScheduleState { name: name.clone(), last_slot: k.last_slot, paused: k.paused }).collect()
    }

    /// [`Driver::set_schedule_paused`](crate::Driver::set_schedule_paused).
    pub(super) fn pause_schedule(&self, name: &str, queue: &str, paused: bool) -> Result<(), DriverError> {
        if !self.supports(Capability::ScheduleClaims) {
            return Err(DriverError::Unsupported("pausing a schedule (the backend keeps no schedules)"));
        }
        validate_queue_name(queue)?;
        self.lock().schedules.entry(name.to_owned()).or_default().paused = paused;
        Ok(())
    }
}
