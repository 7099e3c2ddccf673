fn main() -> std::process::ExitCode {
    larder::cli::main()
}
