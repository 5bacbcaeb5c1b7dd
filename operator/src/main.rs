//! `modelship-operator`: prints a CRD (`crd [modeldeployment|batchprediction]`) or runs the operator (`run`, the default).

use clap::Parser;
use modelship_operator::cli::{Cli, Command, CrdKind};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd { kind }) => {
            print!(
                "{}",
                match kind {
                    CrdKind::Modeldeployment => modelship_operator::crd::crd_yaml(),
                    CrdKind::Batchprediction => modelship_operator::batch::crd_yaml(),
                }
            );
            Ok(())
        }
        Some(Command::Run) | None => {
            // The workspace unifies rustls features with other crates, so pick the provider
            // explicitly instead of relying on rustls to find exactly one.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            modelship_operator::telemetry::init(cli.run.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(modelship_operator::run(cli.run))
        }
    }
}
