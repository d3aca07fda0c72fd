fn main() -> std::process::ExitCode {
    grenzwacht::cli::main()
}
