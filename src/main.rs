//! The `patrol` binary: everything lives in the library; see `patrol::cli`.

fn main() -> std::process::ExitCode {
    patrol::cli::main()
}
