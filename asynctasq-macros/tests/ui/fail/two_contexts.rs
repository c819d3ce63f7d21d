use asynctasq_core::TaskContext;

#[asynctasq_core::task]
async fn two_contexts(a: TaskContext, b: TaskContext) {
    let _ = (a, b);
}

fn main() {}
