//! `gokv-server`: parses the command line, sets up logging, runs the server.

use clap::Parser;

fn main() {
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
