//! `sagactl auth init`: the files that secure a deployment, written into
//! one folder.
//!
//! ```text
//! DIR/auth.conf             included by nats-server.conf: operator, resolver, accounts
//! DIR/<identity>.creds      one per identity: its user JWT and nkey seed
//! DIR/keys/*.nk             the operator's and the accounts' seeds (keep offline)
//! DIR/tls/                  with --tls: ca.pem, server.pem, <identity>.pem and keys
//! ```
//!
//! Running it again keeps every key it finds (the seeds in `keys/` and in
//! the credentials files, the TLS files) and signs the JWTs anew, so a
//! change of permissions reaches the server without changing anybody's
//! credentials; deleting one `.creds` file and running it again rotates
//! that identity's key alone.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nkeys::KeyPair;

use crate::identities::{Identity, IDENTITIES};
use crate::{jwt, tls};

/// The account every identity of the suite belongs to.
const ACCOUNT: &str = "JETSAGA";
/// The server's own account (monitoring and system events).
const SYSTEM_ACCOUNT: &str = "SYS";
const OPERATOR: &str = "jetsaga";

/// What to write.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub out: PathBuf,
    /// Also the TLS material under `tls/`.
    pub tls: bool,
    /// More names for the server certificate.
    pub tls_hosts: Vec<String>,
}

/// Why the material could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a usable nkey seed: {reason}")]
    BadSeed { path: PathBuf, reason: String },
    #[error(transparent)]
    Sign(#[from] jwt::SignError),
    #[error("cannot make the TLS material: {0}")]
    Tls(String),
}

impl AuthError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Where the files of one folder of material are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub dir: PathBuf,
}

impl Material {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The fragment a nats-server configuration `include`s.
    pub fn auth_conf(&self) -> PathBuf {
        self.dir.join("auth.conf")
    }

    pub fn creds(&self, identity: Identity) -> PathBuf {
        self.dir.join(format!("{}.creds", identity.name()))
    }

    pub fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }

    pub fn tls_ca(&self) -> PathBuf {
        self.tls_dir().join("ca.pem")
    }

    /// The server's certificate and key.
    pub fn tls_server(&self) -> (PathBuf, PathBuf) {
        (
            self.tls_dir().join("server.pem"),
            self.tls_dir().join("server-key.pem"),
        )
    }

    /// An identity's client certificate and key.
    pub fn tls_client(&self, identity: Identity) -> (PathBuf, PathBuf) {
        (
            self.tls_dir().join(format!("{}.pem", identity.name())),
            self.tls_dir().join(format!("{}-key.pem", identity.name())),
        )
    }
}

/// The inbox prefix an identity's connections use, and the only one it
/// may receive on: `_INBOX.<identity>`.
pub fn inbox_prefix(identity: Identity) -> String {
    events::subjects::inbox_prefix(identity.name())
}

/// Writes (or completes) the material in `options.out`.
pub fn init(options: &InitOptions) -> Result<Material, AuthError> {
    let material = Material::new(&options.out);
    let keys = material.dir.join("keys");
    create_private_dir(&material.dir)?;
    create_private_dir(&keys)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());

    let operator = seed_file(&keys.join("operator.nk"), KeyPair::new_operator)?;
    let account = seed_file(&keys.join("account.nk"), KeyPair::new_account)?;
    let system = seed_file(&keys.join("system.nk"), KeyPair::new_account)?;

    let operator_jwt = jwt::operator(&operator, OPERATOR, &system.public_key(), now)?;
    let account_jwt = jwt::account(&operator, &account.public_key(), ACCOUNT, true, now)?;
    let system_jwt = jwt::account(&operator, &system.public_key(), SYSTEM_ACCOUNT, false, now)?;
    let conf = format!(
        "# jetsaga's identities (sagactl auth init): include this from the\n\
         # nats-server configuration. Every connection must present one of the\n\
         # credentials files written beside it; each may do only what\n\
         # docs/security.md lists for it.\n\
         operator: {operator_jwt}\n\
         system_account: {system}\n\
         resolver: MEMORY\n\
         resolver_preload: {{\n  \
         {account}: {account_jwt}\n  \
         {system}: {system_jwt}\n\
         }}\n",
        system = system.public_key(),
        account = account.public_key(),
    );
    write_secret(&material.auth_conf(), conf.as_bytes())?;

    for identity in IDENTITIES {
        let path = material.creds(identity);
        let user = match std::fs::read_to_string(&path) {
            Ok(text) => user_seed(&text)
                .and_then(|seed| KeyPair::from_seed(seed).ok())
                .ok_or_else(|| AuthError::BadSeed {
                    path: path.clone(),
                    reason: "no user seed in the credentials file".into(),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => KeyPair::new_user(),
            Err(e) => return Err(AuthError::io(&path, e)),
        };
        let user_jwt = jwt::user(
            &account,
            &user.public_key(),
            identity.name(),
            &identity.permissions(),
            now,
        )?;
        write_secret(&path, creds(&user_jwt, &seed(&user, &path)?).as_bytes())?;
    }
    if options.tls {
        tls::write(&material.tls_dir(), &options.tls_hosts)?;
    }
    Ok(material)
}

/// The key pair whose seed `path` holds, making and saving one first if
/// there is none.
fn seed_file(path: &Path, new: fn() -> KeyPair) -> Result<KeyPair, AuthError> {
    match std::fs::read_to_string(path) {
        Ok(text) => KeyPair::from_seed(text.trim()).map_err(|e| AuthError::BadSeed {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pair = new();
            write_secret(path, format!("{}\n", seed(&pair, path)?).as_bytes())?;
            Ok(pair)
        }
        Err(e) => Err(AuthError::io(path, e)),
    }
}

fn seed(pair: &KeyPair, path: &Path) -> Result<String, AuthError> {
    pair.seed().map_err(|e| AuthError::BadSeed {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// A credentials file, in the format `nsc` writes and every NATS client
/// reads.
fn creds(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

/// The name in the user JWT of a credentials file: the identity it is for
/// (`None` when the file holds no readable JWT).
pub fn creds_identity(creds: &str) -> Option<String> {
    let jwt = creds
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("eyJ"))?;
    let claims = jwt.split('.').nth(1)?;
    let claims = data_encoding::BASE64URL_NOPAD
        .decode(claims.as_bytes())
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    claims.get("name")?.as_str().map(str::to_owned)
}

/// The user seed in a credentials file.
fn user_seed(creds: &str) -> Option<&str> {
    creds
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("SU") && !line.contains(' '))
}

pub(crate) fn create_private_dir(dir: &Path) -> Result<(), AuthError> {
    std::fs::create_dir_all(dir).map_err(|e| AuthError::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| AuthError::io(dir, e))?;
    }
    Ok(())
}

/// Writes a file only its owner may read (`0600`), replacing it whole.
pub(crate) fn write_secret(path: &Path, contents: &[u8]) -> Result<(), AuthError> {
    let partial = path.with_extension("partial");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(&partial)
            .map_err(|e| AuthError::io(&partial, e))?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(|e| AuthError::io(&partial, e))?;
    }
    std::fs::rename(&partial, path).map_err(|e| AuthError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path, tls: bool) -> InitOptions {
        InitOptions {
            out: dir.to_owned(),
            tls,
            tls_hosts: vec!["nats.example.com".into()],
        }
    }

    #[test]
    fn init_writes_the_fragment_and_one_credentials_file_per_identity() {
        let dir = tempfile::tempdir().unwrap();
        let material = init(&options(dir.path(), false)).unwrap();
        let conf = std::fs::read_to_string(material.auth_conf()).unwrap();
        assert!(conf.contains("resolver: MEMORY"));
        assert!(conf.contains("resolver_preload"));
        for identity in IDENTITIES {
            let creds = std::fs::read_to_string(material.creds(identity)).unwrap();
            assert!(creds.contains("BEGIN NATS USER JWT"), "{}", identity.name());
            assert!(user_seed(&creds).is_some());
        }
        assert!(!material.tls_dir().exists());
    }

    #[test]
    fn a_credentials_file_names_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let material = init(&options(dir.path(), false)).unwrap();
        for identity in IDENTITIES {
            let creds = std::fs::read_to_string(material.creds(identity)).unwrap();
            assert_eq!(creds_identity(&creds).as_deref(), Some(identity.name()));
        }
        assert_eq!(creds_identity("not a credentials file"), None);
    }

    #[test]
    fn running_it_again_keeps_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let material = init(&options(dir.path(), true)).unwrap();
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        let seeds_before: Vec<String> = IDENTITIES
            .iter()
            .map(|i| user_seed(&read(material.creds(*i))).unwrap().to_owned())
            .collect();
        let operator_before = read(dir.path().join("keys/operator.nk"));
        let ca_before = read(material.tls_ca());
        let (server_cert, _) = material.tls_server();
        let server_before = read(server_cert.clone());

        init(&options(dir.path(), true)).unwrap();

        let seeds_after: Vec<String> = IDENTITIES
            .iter()
            .map(|i| user_seed(&read(material.creds(*i))).unwrap().to_owned())
            .collect();
        assert_eq!(seeds_before, seeds_after);
        assert_eq!(operator_before, read(dir.path().join("keys/operator.nk")));
        assert_eq!(ca_before, read(material.tls_ca()));
        assert_eq!(server_before, read(server_cert));
    }

    #[test]
    fn deleting_one_credentials_file_rotates_that_key_alone() {
        let dir = tempfile::tempdir().unwrap();
        let material = init(&options(dir.path(), false)).unwrap();
        let read = |i: Identity| {
            user_seed(&std::fs::read_to_string(material.creds(i)).unwrap())
                .unwrap()
                .to_owned()
        };
        let (client, admin) = (read(Identity::Client), read(Identity::Admin));
        std::fs::remove_file(material.creds(Identity::Client)).unwrap();
        init(&options(dir.path(), false)).unwrap();
        assert_ne!(read(Identity::Client), client);
        assert_eq!(read(Identity::Admin), admin);
    }

    #[cfg(unix)]
    #[test]
    fn secrets_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let material = init(&options(dir.path(), true)).unwrap();
        for path in [
            material.creds(Identity::Admin),
            dir.path().join("keys/account.nk"),
            material.tls_server().1,
        ] {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        for folder in [dir.path().join("keys"), material.tls_dir()] {
            let mode = std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", folder.display());
        }
    }
}
