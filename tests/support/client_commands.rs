//! The certbot and lego command lines the real-client tests share
//! (tests/interop.rs, tests/alternate_chains.rs, tests/eab.rs, tests/revocation.rs): one client against one Kiln, trusting its root and
//! answering http-01 with its own standalone server on loopback, its files
//! in a directory of the test's. A test appends what is its own (a profile,
//! a preferred chain, EAB) and runs it with `kiln_tests::clients::run`.

use kiln::Kiln;
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// The contact address every client registers with.
const EMAIL: &str = "x@clients.test";

/// certbot's directories, under the client directory.
pub struct CertbotDirs {
    config: PathBuf,
    work: PathBuf,
    logs: PathBuf,
}

impl CertbotDirs {
    fn under(client_dir: &Path) -> CertbotDirs {
        CertbotDirs {
            config: client_dir.join("config"),
            work: client_dir.join("work"),
            logs: client_dir.join("logs"),
        }
    }

    /// Where certbot writes the certificate whose first name is `name`
    /// (`cert.pem`, `chain.pem`, `fullchain.pem`).
    pub fn live(&self, name: &str) -> PathBuf {
        self.config.join("live").join(name)
    }

    /// certbot's own log, for failure messages.
    pub fn log_files(&self) -> [PathBuf; 1] {
        [self.logs.join("letsencrypt.log")]
    }
}

/// `certbot SUBCOMMAND` against `kiln`, non-interactive, its directories
/// under `client_dir` and no cli.ini of the user running the tests.
pub fn certbot(
    certbot: &Path,
    kiln: &Kiln,
    client_dir: &Path,
    subcommand: &str,
) -> (Command, CertbotDirs) {
    let dirs = CertbotDirs::under(client_dir);
    let mut command = Command::new(certbot);
    command
        .env("REQUESTS_CA_BUNDLE", &kiln.root_pem_path)
        .env("XDG_CONFIG_HOME", client_dir)
        .arg(subcommand)
        .arg("--non-interactive")
        .args(["--server", &kiln.directory_url])
        .arg("--config-dir")
        .arg(&dirs.config)
        .arg("--work-dir")
        .arg(&dirs.work)
        .arg("--logs-dir")
        .arg(&dirs.logs);
    (command, dirs)
}

/// `certbot certonly --standalone` for `names` from `kiln`, its standalone
/// server on `http01_port` (where Kiln's http-01 validation connects), its
/// directories under `client_dir`.
pub fn certbot_certonly(
    certbot_path: &Path,
    kiln: &Kiln,
    http01_port: u16,
    client_dir: &Path,
    names: &[&str],
) -> (Command, CertbotDirs) {
    let (mut command, dirs) = certbot(certbot_path, kiln, client_dir, "certonly");
    command
        .arg("--agree-tos")
        .args(["-m", EMAIL])
        .arg("--no-eff-email")
        .arg("--standalone")
        .args(["--preferred-challenges", "http"])
        .args(["--http-01-port", &http01_port.to_string()])
        .args(["--http-01-address", "127.0.0.1"]);
    for name in names {
        command.args(["-d", name]);
    }
    (command, dirs)
}

/// lego's global flags for `names` from `kiln`, its `--http` server on
/// `http01_port`, its files under `client_dir` (the certificate in
/// `certificates/NAME.crt`, NAME the first name). Append further global
/// flags, then `run` and its own.
pub fn lego(
    lego: &Path,
    kiln: &Kiln,
    http01_port: u16,
    client_dir: &Path,
    names: &[&str],
) -> Command {
    let mut command = Command::new(lego);
    command
        .env("LEGO_CA_CERTIFICATES", &kiln.root_pem_path)
        .args(["--server", &kiln.directory_url])
        .arg("--accept-tos")
        .args(["--email", EMAIL])
        .arg("--path")
        .arg(client_dir)
        .arg("--http")
        .args(["--http.port", &format!("127.0.0.1:{http01_port}")]);
    for name in names {
        command.args(["--domains", name]);
    }
    command
}

/// Where lego wrote the certificate whose first name is `name`, and its
/// issuer's.
pub fn lego_certificate(client_dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let certificates = client_dir.join("certificates");
    (
        certificates.join(format!("{name}.crt")),
        certificates.join(format!("{name}.issuer.crt")),
    )
}
