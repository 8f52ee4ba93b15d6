//! `gokv-loadtest`: a load generator for GoKV and Redis. See `loadtest/README.md`.

mod cli;
mod driver;
mod resp;
mod setup;
mod stats;
mod timer;
mod workload;

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;

use cli::{Args, CommandArg, DistArg, TargetArg};
use driver::{run_phase, Phase};
use stats::{Progress, RunInfo, Summary};
use workload::{KeyDist, Mix, Target, Workload, Zipfian};

/// Pipeline depth of the prefill, at least: it only has to be quick.
const PREFILL_PIPELINE: usize = 32;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<ExitCode, String> {
    let addr = resolve(&args.host, args.port)?;
    let target = Target::from(args.target);
    let auth = args.auth();

    // Ctrl-C once: stop sending, collect the outstanding replies, print the summary.
    // Ctrl-C twice: exit at once.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop)))
            .map_err(|e| format!("cannot install signal handler: {e}"))?;
    }

    // Fail early and plainly if the server is unreachable or refuses the credentials.
    let mut probe = setup::connect(addr, auth.as_deref())?;
    if args.conn_shard.is_some() {
        // ... and plainly if it cannot say which shard a connection is on.
        setup::client_shard(&mut probe)?;
    }
    drop(probe);

    let partitions = match args.target {
        TargetArg::Gokv => args.partitions.clone(),
        TargetArg::Redis => Vec::new(),
    };
    if args.create {
        for note in setup::create_partitions(addr, auth.as_deref(), &partitions)? {
            if !args.quiet {
                eprintln!("{note}");
            }
        }
    }

    let keys = match args.dist {
        DistArg::Uniform => KeyDist::Uniform(args.keys),
        DistArg::Zipfian => KeyDist::Zipfian(Zipfian::new(args.keys, args.zipf_theta)),
    };
    let mix = match args.command {
        CommandArg::Mixed => Mix::ReadWrite {
            reads: args.ratio.reads,
            writes: args.ratio.writes,
        },
        CommandArg::Ping => Mix::Ping,
    };
    let workload = |mix| {
        Workload::new(
            target,
            &partitions,
            mix,
            keys.clone(),
            args.keys,
            args.value_size,
        )
    };

    if args.prefill {
        let prefill = workload(Mix::Prefill);
        let phase = Phase {
            addr,
            auth: auth.clone(),
            conn_shard: args.conn_shard,
            connections: args.connections,
            threads: args.threads,
            pipeline: args.pipeline.max(PREFILL_PIPELINE),
            rate: None,
            requests: Some(prefill.prefill_requests()),
            duration: None,
            // The prefill numbers its SETs over every (partition, key) pair itself.
            partition_per_connection: false,
            workload: prefill,
        };
        let progress = (!args.quiet).then(|| Progress::new("prefill "));
        let result = run_phase(&phase, Arc::clone(&stop), progress);
        let s = &result.stats;
        if !args.quiet || !s.fatal.is_empty() || s.errors > 0 {
            eprintln!(
                "prefill: {} SETs in {:.2} s, {} errors{}",
                s.ops(),
                result.elapsed.as_secs_f64(),
                s.errors,
                s.error_samples
                    .first()
                    .map(|(text, _)| format!(" (first: {text})"))
                    .unwrap_or_default()
            );
        }
        if let Some(f) = s.fatal.first() {
            return Err(format!("prefill failed: {f}"));
        }
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Err("interrupted during prefill".into());
        }
    }

    let phase = Phase {
        addr,
        auth,
        conn_shard: args.conn_shard,
        connections: args.connections,
        threads: args.threads,
        pipeline: args.pipeline,
        rate: args.rate,
        requests: args.requests,
        duration: args.run_duration(),
        partition_per_connection: args.partition_per_connection,
        workload: workload(mix),
    };
    let progress = (!args.quiet).then(|| Progress::new(""));
    let result = run_phase(&phase, stop, progress);

    let info = RunInfo {
        target: match args.target {
            TargetArg::Gokv => "gokv",
            TargetArg::Redis => "redis",
        },
        addr: addr.to_string(),
        command: match args.command {
            CommandArg::Mixed => "mixed",
            CommandArg::Ping => "ping",
        },
        connections: args.connections,
        threads: args.threads.min(args.connections),
        pipeline: args.pipeline,
        ratio: (args.command == CommandArg::Mixed).then(|| args.ratio.to_string()),
        keys: args.keys,
        dist: match args.dist {
            DistArg::Uniform => "uniform".into(),
            DistArg::Zipfian => format!("zipfian theta {}", args.zipf_theta),
        },
        value_size: args.value_size,
        partitions,
        rate: args.rate,
        conn_shard: args.conn_shard,
    };
    let summary = Summary::new(info, &result.stats, result.elapsed);
    if args.json {
        println!("{}", summary.to_json());
    } else {
        print!("{}", summary.to_text());
    }
    Ok(if summary.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}:{port} resolves to no address"))
}
