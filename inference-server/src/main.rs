use std::process::ExitCode;

use clap::Parser;
use modelship_server::config::{Cli, Command, LogArgs, LogFormat};
use tracing_subscriber::EnvFilter;

fn init_tracing(log: &LogArgs) {
    let filter = EnvFilter::try_new(&log.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log);
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
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => modelship_server::serve::run(args).await,
            Command::Fetch(args) => modelship_server::fetch::run_fetch(&args).await,
            Command::Predict(args) => modelship_server::predict::run(args).await,
        }
    })
}
