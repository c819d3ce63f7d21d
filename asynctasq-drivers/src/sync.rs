//! Locking shared by the drivers.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, going on past a panic of another holder: every value the drivers keep under a
/// lock stays consistent between statements, so a poisoned lock holds nothing half-written.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
