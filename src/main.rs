//! srgate's command line: parse arguments, load the config, start the shards.

use std::path::PathBuf;
use std::process::ExitCode;

use srgate::config::Config;

const USAGE: &str = "\
usage: srgate [-c FILE]          run the gateway (default config: conf/srgate.ini)
       srgate check [-c FILE]    validate FILE and print the effective configuration
       srgate --version          print the version
exit codes: 0 ok, 2 bad configuration, 1 other failure";

enum Command {
    Run(PathBuf),
    Check(PathBuf),
    Version,
    Help,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut config = PathBuf::from("conf/srgate.ini");
    let mut check = false;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "-c" | "--config" => {
                i += 1;
                config = PathBuf::from(args.get(i).ok_or("-c needs a file name")?);
            }
            "check" if i == 0 => check = true,
            "-V" | "--version" => return Ok(Command::Version),
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unknown argument '{other}'")),
        }
        i += 1;
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
        Command::Run(path) => {
            let config = match load(&path) {
                Ok(c) => c,
                Err(code) => return code,
            };
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
