//! The in-memory driver against the shared conformance suite.

use std::sync::Arc;

use asynctasq_core::{Driver, MemoryDriver};

asynctasq_core::conformance_tests!(|| async { Arc::new(MemoryDriver::new()) as Arc<dyn Driver> });
