//! `crmflow`: the command-line entry point. Parses flags, sets up logging, runs the
//! command and maps its outcome to an exit code (see [`exit`]).

mod allocator;
mod cli;
mod commands;
mod demo;
mod exit;
mod generate;
mod logging;
mod models_stage;
mod pipeline;
mod publish;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    allocator::limit_malloc_arenas();
    let cli = cli::Cli::parse();
    logging::init(cli.log_format, &cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            exit::code_of(&e)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
