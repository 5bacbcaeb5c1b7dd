use std::process::ExitCode;

use clap::Parser;
use modelship_server::cmd::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cmd::init_tracing(&cli.log);
    // Two TLS crypto providers are compiled in (object_store and kube pick
    // different defaults); name one so rustls never has to guess.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("modelship-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(cmd::run(cli.command))
}
