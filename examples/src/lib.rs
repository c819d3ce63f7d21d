//! Runnable examples of asynctasq: see `quickstart.rs`.
