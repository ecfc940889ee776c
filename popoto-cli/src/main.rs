//! The generic `popoto` binary: the tenant catalog, without any application model (see the
//! crate documentation for an application's own binary with its models).

fn main() -> std::process::ExitCode {
    popoto_cli::main_with(popoto::ModelSet::new())
}
