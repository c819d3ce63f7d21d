//! The consumer a driver handle claims for ([`Driver::consumer`]): the backends that keep task
//! records write it with each claim, as the lease holder.

use std::sync::{Arc, PoisonError, RwLock};

#[cfg(doc)]
use asynctasq_core::Driver;

/// The consumer's name, shared by a handle's clones.
#[derive(Debug, Default)]
pub(crate) struct Consumer(RwLock<Option<Arc<str>>>);

impl Consumer {
    /// The longest name kept (MySQL's column holds 255 characters).
    const MAX_CHARS: usize = 200;

    /// Names the consumer, cut to [`Self::MAX_CHARS`].
    pub(crate) fn set(&self, name: &str) {
        let name: String = name.chars().take(Self::MAX_CHARS).collect();
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(name.into());
    }

    /// The name, if one was given.
    pub(crate) fn get(&self) -> Option<Arc<str>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
