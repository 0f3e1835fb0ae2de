//! The `shopstream` binary: parse the configuration, start logging, run the server.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let config = shopstream::Config::parse();
    shopstream::telemetry::init(config.log_format);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("shopstream: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        shopstream::shutdown::cancel_on_signal(shutdown.clone());
        match shopstream::run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "shopstream stopped");
                ExitCode::FAILURE
            }
        }
    })
}
