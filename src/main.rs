//! The `hookyard` binary: arguments → config → telemetry → run.

use clap::Parser;

/// mimalloc: measurably faster than the system allocator for the many small, short-lived
/// allocations of the request path (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 3 option numbers (`mi_option_e` in its `mimalloc.h`), which its Rust bindings
/// do not name.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Commit memory as it is used and hand freed memory back at once: an idle server then holds
/// about what the system allocator would (measured: 15 instead of 36 MB), at no throughput
/// cost measured. `MIMALLOC_*` environment variables still override these defaults.
fn tune_allocator() {
    // SAFETY: plain setters of process-wide allocator options, called first thing in `main`
    // before any other thread exists; both options accept these values at any time.
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, 0);
    }
}

/// glibc's `M_ARENA_MAX` (`malloc.h`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const M_ARENA_MAX: std::ffi::c_int = -8;
/// Arenas of the C allocator at most: one per core of this 2-core target.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const C_ARENAS: std::ffi::c_int = 2;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
// SAFETY: glibc's `int mallopt(int param, int value)`, declared as `malloc.h` does.
unsafe extern "C" {
    fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
}

/// SQLite allocates through the C library's malloc, not mimalloc. glibc gives each new thread
/// an arena of its own (up to 8 per core), and the blocking threads that come and go under
/// load left 16 arenas holding 31 MB for 5 MB in use; two arenas hold the same work in a
/// fraction of that (measured in BENCHMARKS.md, "Steady memory"). `MALLOC_ARENA_MAX` in the
/// environment still overrides this.
fn tune_c_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: a plain setter of a glibc allocator parameter, called first thing in `main`
        // before any other thread exists; glibc accepts it at any time.
        unsafe {
            mallopt(M_ARENA_MAX, C_ARENAS);
        }
    }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    tune_c_allocator();
    let cli = hookyard::cli::Cli::parse();
    hookyard::telemetry::init();
    match hookyard::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hookyard: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
