//! The application's binary: the whole asynctasq command line, running my-tasks' tasks.

fn main() -> std::process::ExitCode {
    asynctasq::core::link_tasks!(my_tasks);
    asynctasq::run!()
}
