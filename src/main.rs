//! The `patrol` binary: everything lives in the library; see `patrol::cli`.

#![warn(clippy::too_many_lines)]

fn main() -> std::process::ExitCode {
    patrol::cli::main()
}
