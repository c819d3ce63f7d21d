//! The stock `asynctasq` binary. It links no tasks of its own: to run workers for your tasks,
//! build your own binary whose `main` calls [`asynctasq_cli::main`].

fn main() -> std::process::ExitCode {
    asynctasq_cli::main()
}
