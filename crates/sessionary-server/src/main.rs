//! `sessionary`: the session service. Parses the command line, loads the
//! configuration, sets up tracing and runs [`sessionary_server::serve::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sessionary_server::config::{self, Config, ConfigErrors, Overrides};
use utoipa::OpenApi as _;

/// Exit code for bad command lines and configuration (sysexits `EX_USAGE`).
const EX_USAGE: u8 = 64;

/// Sessionary: session management for websites and APIs.
#[derive(Debug, Parser)]
#[command(
    name = "sessionary",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Configuration: defaults < TOML file (--config or SESSIONARY_CONFIG) < SESSIONARY_* \
                  environment variables (nested keys joined with __, e.g. \
                  SESSIONARY_POLICY__DEFAULT__IDLE_TIMEOUT=15m) < flags. Every key: docs/config.md.\n\
                  Exit codes: 0 clean stop, 64 bad command line or configuration, 1 other failures."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the session service (the default).
    Serve(ServeArgs),
    /// Print the effective configuration (secrets redacted), or what is wrong with it.
    ConfigCheck(ServeArgs),
    /// Print the OpenAPI 3.1 document of the service API.
    Openapi,
}

#[derive(Debug, Args, Default)]
struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, short, env = "SESSIONARY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args, Default)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Folder for the SQLite file and generated keys.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

fn usage_error(e: &ConfigErrors) -> ExitCode {
    for err in &e.0 {
        eprintln!("error: {err}");
    }
    eprintln!("See docs/config.md for every key, its default and its environment variable.");
    ExitCode::from(EX_USAGE)
}

fn load(args: &ConfigArgs, overrides: &Overrides) -> Result<Config, ConfigErrors> {
    config::load(args.config.as_deref(), overrides)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Some(Command::ConfigCheck(args)) => config_check(&args),
        Some(Command::Openapi) => {
            match sessionary_server::api::ApiDoc::openapi().to_pretty_json() {
                Ok(doc) => print_stdout(&format!("{doc}\n")),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Serve(args)) => serve(&args),
        None => serve(&cli.serve),
    }
}

/// Prints to stdout; a closed pipe (`| head`) is not a crash.
fn print_stdout(s: &str) -> ExitCode {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(s.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config_check(args: &ServeArgs) -> ExitCode {
    let config = match load(&args.config, &overrides(args)) {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    if let Err(e) = config.validate() {
        return usage_error(&e);
    }
    match config.to_redacted_toml() {
        Ok(t) => print_stdout(&format!(
            "# Effective configuration (secrets redacted)\n{t}"
        )),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn overrides(args: &ServeArgs) -> Overrides {
    Overrides {
        listen: args.listen.clone(),
        data_dir: args.data_dir.clone(),
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let settings = match load(&args.config, &overrides(args)).and_then(|c| c.validate()) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    // Validated above, so the filter parses.
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&settings.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log_format {
        config::LogFormat::Json => logs.json().with_current_span(true).init(),
        config::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sessionary_server::serve::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("error: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
