//! `sessionary`: the session service. Parses the command line, loads the
//! configuration, sets up tracing and runs [`sessionary_server::serve::run`].

// With redis-rs' TLS features on, rustc needs more than its default query
// depth (128) to lay out the serve future ("queries overflow the depth
// limit" in `cargo check`).
#![recursion_limit = "256"]

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
    /// List or revoke sessions in the configured store.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Rotate the data keys and access-token signing keys of the data folder.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage the demo shop's accounts (`<data_dir>/demo-users`).
    #[command(subcommand)]
    Users(UsersCommand),
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// A user's live sessions, oldest first.
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// Whose sessions.
        #[arg(long, short, value_name = "USER")]
        user: String,
        /// One JSON object per line, as the API shows sessions.
        #[arg(long)]
        json: bool,
    },
    /// End a session by id, or all of a user's (reason `revoked_by_admin`).
    Revoke {
        #[command(flatten)]
        config: ConfigArgs,
        /// The session's public id (base64url, so it may start with `-`; it is
        /// still taken as the id, and `--` before it is always safe).
        #[arg(
            value_name = "ID",
            required_unless_present = "user",
            conflicts_with = "user",
            allow_hyphen_values = true
        )]
        id: Option<String>,
        /// End every session of this user instead.
        #[arg(long, short, value_name = "USER")]
        user: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// New current keys; old ones keep opening and verifying (both kinds,
    /// unless --data or --tokens narrows it). Running nodes use them after a restart.
    Rotate {
        #[command(flatten)]
        config: ConfigArgs,
        /// Only the data keys (session data sealing).
        #[arg(long, conflicts_with = "tokens")]
        data: bool,
        /// Only the access-token signing keys.
        #[arg(long)]
        tokens: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Every account and its role.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// A new account; its password is drawn and shown once unless --password-stdin.
    Add {
        #[command(flatten)]
        config: ConfigArgs,
        /// The account's name.
        name: String,
        /// Its role.
        #[arg(long, default_value = "user")]
        role: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// A new password (drawn and shown once unless --password-stdin).
    Passwd {
        #[command(flatten)]
        config: ConfigArgs,
        /// The account's name.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove an account and end all of its sessions (`user_disabled`).
    Remove {
        #[command(flatten)]
        config: ConfigArgs,
        /// The account's name.
        name: String,
    },
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
        Some(Command::Sessions(c)) => admin(c),
        Some(Command::Keys(c)) => admin_keys(c),
        Some(Command::Users(c)) => admin_users(c),
        None => serve(&cli.serve),
    }
}

/// The validated settings of `config`, or the exit code of the failure.
fn settings(config: &ConfigArgs) -> Result<config::Settings, ExitCode> {
    load(config, &Overrides::default())
        .and_then(|c| c.validate())
        .map_err(|e| usage_error(&e))
}

/// Prints what a command said, or its error (64 for the caller's mistakes).
fn finish(result: Result<String, sessionary_server::cli::CliError>) -> ExitCode {
    match result {
        Ok(out) => print_stdout(&out),
        Err(e) => {
            let mut msg = format!("error: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            if e.is_usage() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Runs `f` on a small runtime (administration commands are short).
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, ExitCode> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => Ok(r.block_on(f)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

fn quiet_logs() {
    // Warnings and errors only, on stderr, so stdout stays the command's answer.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
}

fn admin(command: SessionsCommand) -> ExitCode {
    use sessionary_server::cli;
    quiet_logs();
    let (SessionsCommand::List { config, .. } | SessionsCommand::Revoke { config, .. }) = &command;
    let s = match settings(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let result = block_on(async {
        match &command {
            SessionsCommand::List { user, json, .. } => cli::list(&s, user, *json).await,
            SessionsCommand::Revoke { id, user, .. } => {
                let target = match (id, user) {
                    (_, Some(u)) => cli::RevokeTarget::User(u.clone()),
                    (Some(id), None) => cli::RevokeTarget::Session(id.clone()),
                    (None, None) => {
                        return Err(cli::CliError::Usage("give a session id or --user".into()));
                    }
                };
                cli::revoke(&s, &target).await
            }
        }
    });
    match result {
        Ok(r) => finish(r),
        Err(code) => code,
    }
}

fn admin_keys(command: KeysCommand) -> ExitCode {
    quiet_logs();
    let KeysCommand::Rotate {
        config,
        data,
        tokens,
    } = command;
    let s = match settings(&config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let which = sessionary_server::cli::RotateKeys {
        data: data || !tokens,
        tokens: tokens || !data,
    };
    finish(sessionary_server::cli::rotate_keys(&s, which))
}

/// The first line of standard input, without its line end.
fn password_from_stdin() -> Result<String, ExitCode> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(_) => Ok(line.trim_end_matches(['\r', '\n']).to_owned()),
        Err(e) => {
            eprintln!("error: cannot read the password from standard input: {e}");
            Err(ExitCode::from(EX_USAGE))
        }
    }
}

fn admin_users(command: UsersCommand) -> ExitCode {
    use sessionary_server::cli::UsersCommand as U;
    quiet_logs();
    let (config, cmd) = match command {
        UsersCommand::List { config } => (config, U::List),
        UsersCommand::Add {
            config,
            name,
            role,
            password_stdin,
        } => {
            let password = if password_stdin {
                match password_from_stdin() {
                    Ok(p) => Some(p),
                    Err(code) => return code,
                }
            } else {
                None
            };
            (
                config,
                U::Add {
                    name,
                    role,
                    password,
                },
            )
        }
        UsersCommand::Passwd {
            config,
            name,
            password_stdin,
        } => {
            let password = if password_stdin {
                match password_from_stdin() {
                    Ok(p) => Some(p),
                    Err(code) => return code,
                }
            } else {
                None
            };
            (config, U::Passwd { name, password })
        }
        UsersCommand::Remove { config, name } => (config, U::Remove { name }),
    };
    let s = match settings(&config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match block_on(sessionary_server::cli::users(&s, cmd)) {
        Ok(r) => finish(r),
        Err(code) => code,
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
