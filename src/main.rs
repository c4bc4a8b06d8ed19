//! srgate's command line: parse arguments, load the config, start the shards.

use std::path::PathBuf;
use std::process::ExitCode;

use srgate::config::Config;

const USAGE: &str = "\
usage: srgate [-c FILE | FILE]   run the gateway (default config: conf/srgate.ini)
       srgate check [-c FILE | FILE]
                                 validate FILE and print the effective configuration
       srgate token USER [--ttl SECONDS] [-c FILE]
                                 print a login token for USER signed with [auth] secret
                                 (default ttl 86400 s)
       srgate --version          print the version
exit codes: 0 ok, 2 bad configuration, 1 other failure";

enum Command {
    Run(PathBuf),
    Check(PathBuf),
    Token {
        config: PathBuf,
        user: String,
        ttl: u64,
    },
    Version,
    Help,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut config = PathBuf::from("conf/srgate.ini");
    let mut check = false;
    let mut token_user: Option<String> = None;
    let mut ttl: u64 = 86_400;
    let mut positional_config = false;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "-c" | "--config" => {
                if positional_config {
                    return Err("give the config file once (-c FILE or FILE)".into());
                }
                positional_config = true;
                i += 1;
                config = PathBuf::from(args.get(i).ok_or("-c needs a file name")?);
            }
            "check" if i == 0 => check = true,
            "token" if i == 0 => {
                i += 1;
                token_user = Some(args.get(i).ok_or("token needs a user name")?.clone());
            }
            "--ttl" if token_user.is_some() => {
                i += 1;
                ttl = args
                    .get(i)
                    .and_then(|t| t.parse().ok())
                    .filter(|t| *t > 0)
                    .ok_or("--ttl needs a number of seconds > 0")?;
            }
            "-V" | "--version" => return Ok(Command::Version),
            "-h" | "--help" => return Ok(Command::Help),
            // `srgate FILE`, as SRProxy is started with its rtx.conf (not after `token`:
            // its user is the only word there)
            file if !file.starts_with('-') && !positional_config && token_user.is_none() => {
                positional_config = true;
                config = PathBuf::from(file);
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
        i += 1;
    }
    if let Some(user) = token_user {
        if !srgate::signal::protocol::valid_user(&user) {
            return Err(format!(
                "'{user}' is not a valid user name (1-64 of A-Z a-z 0-9 _ . + @ -)"
            ));
        }
        return Ok(Command::Token { config, user, ttl });
    }
    Ok(if check {
        Command::Check(config)
    } else {
        Command::Run(config)
    })
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    match Config::load(path) {
        Ok((config, warnings)) => {
            for w in warnings {
                eprintln!("warning: {w}");
            }
            Ok(config)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(2))
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("srgate: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Version => {
            println!("srgate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Check(path) => match load(&path) {
            Ok(config) => {
                print!("{}", config.effective());
                eprintln!("{}: ok", path.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Token { config, user, ttl } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let secret = config.auth.secret.expose();
            if secret.is_empty() {
                eprintln!("error: [auth] secret is empty: logins are open and need no token");
                return ExitCode::from(2);
            }
            #[allow(clippy::disallowed_methods)] // the command line is outside the core
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            println!(
                "{}",
                srgate::signal::token::mint(secret.as_bytes(), &user, now + ttl)
            );
            ExitCode::SUCCESS
        }
        Command::Run(path) => {
            let config = match load(&path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            // the log and CDR files srgate creates: 0640, not readable by other users
            srgate::io::sys::restrict_new_files();
            let _logger = match srgate::logging::init(&config.log) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {}: [log]: {e}", path.display());
                    return ExitCode::from(2);
                }
            };
            match srgate::io::run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_config_file_by_option_or_by_position() {
        for args in [&["-c", "rtx.conf"][..], &["rtx.conf"][..]] {
            assert!(
                matches!(parse(args), Ok(Command::Run(p)) if p == std::path::Path::new("rtx.conf")),
                "{args:?}"
            );
        }
        assert!(
            matches!(parse(&["check", "rtx.conf"]), Ok(Command::Check(p)) if p == std::path::Path::new("rtx.conf"))
        );
        assert!(
            matches!(parse(&[]), Ok(Command::Run(p)) if p == std::path::Path::new("conf/srgate.ini"))
        );
        // one file only, and unknown options stay errors
        assert!(parse(&["a.ini", "b.ini"]).is_err());
        assert!(parse(&["-c", "a.ini", "b.ini"]).is_err());
        assert!(parse(&["b.ini", "-c", "a.ini"]).is_err());
        assert!(parse(&["token", "alice", "x.ini"]).is_err());
        assert!(parse(&["--frobnicate"]).is_err());
    }
}
