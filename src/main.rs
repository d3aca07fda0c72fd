// The allocator returns freed memory to the system (see `proxy::admission`, "Memory back to
// the system").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    grenzwacht::cli::main()
}
