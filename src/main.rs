//! `gokv-server`: parses the command line, sets up logging, runs the server.

use clap::Parser;

fn main() {
    fix_mmap_threshold();
    // `RUST_LOG` controls logging; the default shows startup, shutdown and warnings.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = gokv::config::Cli::parse();
    let config = match gokv::config::Config::from_cli(cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("gokv-server: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = gokv::server::run(config) {
        log::error!("{e}");
        std::process::exit(1);
    }
}

/// Makes glibc serve every allocation of 128 KiB or more with its own `mmap`, and give it back
/// to the kernel when freed.
///
/// glibc raises that threshold by itself (up to 32 MiB) each time such a block is freed, after
/// which big blocks come from the heap and their pages stay resident. Here that kept two
/// argon2 work areas (19 MiB each, one per login hasher thread) resident forever: 42 MiB of
/// RSS before the first key. It would also keep a table's old index and compacted arena
/// segments (256 KiB each) resident. A fixed threshold costs one `mmap`/`munmap` pair per such
/// block, which is nothing next to filling 256 KiB or hashing a password.
fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
