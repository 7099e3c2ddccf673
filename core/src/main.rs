fn main() -> std::process::ExitCode {
    larder::app::cli::main()
}
