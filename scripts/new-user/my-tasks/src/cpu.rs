//! CPU-bound tasks, in a module of their own (another codegen unit than `lib.rs`).

use asynctasq::{TaskError, task};

/// A CPU-bound task: a plain `fn` runs on the blocking pool.
#[task(queue = "emails")]
pub fn checksum(data: Vec<u8>) -> Result<(), TaskError> {
    let sum: u64 = data.iter().map(|b| u64::from(*b)).sum();
    println!("checksum {sum}");
    Ok(())
}
