//! TLS material for a deployment: a CA of its own, one server certificate
//! that every NATS node presents (to clients, and to each other on the
//! mutually authenticated cluster routes, so it serves both purposes),
//! and one client certificate per identity. Existing files are kept, so a
//! second run only adds what is missing.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::identities::IDENTITIES;
use crate::material::{create_private_dir, write_secret, AuthError};

/// The names the server certificate is valid for, beside any given: a
/// local run, Compose's service names and a Kubernetes StatefulSet's.
pub const SERVER_NAMES: [&str; 13] = [
    "localhost",
    "127.0.0.1",
    "::1",
    "nats",
    "nats-0",
    "nats-1",
    "nats-2",
    "*.nats",
    "nats.jetsaga.svc",
    "nats.jetsaga.svc.cluster.local",
    "*.nats.jetsaga.svc",
    "*.nats.jetsaga.svc.cluster.local",
    "*.nats-headless.jetsaga.svc.cluster.local",
];

/// Writes what is missing of the CA, the server's certificate (with
/// `extra_hosts` among its names) and the identities' under `dir`.
pub fn write(dir: &Path, extra_hosts: &[String]) -> Result<(), AuthError> {
    create_private_dir(dir)?;
    let ca_cert = dir.join("ca.pem");
    let ca_key = dir.join("ca-key.pem");
    if !ca_cert.exists() || !ca_key.exists() {
        let key = KeyPair::generate().map_err(tls)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "jetsaga CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = params.self_signed(&key).map_err(tls)?;
        write_secret(&ca_cert, cert.pem().as_bytes())?;
        write_secret(&ca_key, key.serialize_pem().as_bytes())?;
    }
    let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| AuthError::io(path, e));
    let issuer = Issuer::from_ca_cert_pem(
        &read(&ca_cert)?,
        KeyPair::from_pem(&read(&ca_key)?).map_err(tls)?,
    )
    .map_err(tls)?;

    let mut server_names: Vec<String> = SERVER_NAMES.iter().map(|s| (*s).to_owned()).collect();
    server_names.extend(extra_hosts.iter().cloned());
    leaf(
        dir,
        "server",
        server_names,
        &[
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        &issuer,
    )?;
    for identity in IDENTITIES {
        leaf(
            dir,
            identity.name(),
            Vec::new(),
            &[ExtendedKeyUsagePurpose::ClientAuth],
            &issuer,
        )?;
    }
    Ok(())
}

/// `<dir>/<name>.pem` and `<dir>/<name>-key.pem`, unless both exist.
fn leaf(
    dir: &Path,
    name: &str,
    names: Vec<String>,
    usages: &[ExtendedKeyUsagePurpose],
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(), AuthError> {
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}-key.pem"));
    if cert_path.exists() && key_path.exists() {
        return Ok(());
    }
    let key = KeyPair::generate().map_err(tls)?;
    let mut params = CertificateParams::new(names).map_err(tls)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages.to_vec();
    params.use_authority_key_identifier_extension = true;
    params.not_after = rcgen::date_time_ymd(2031, 1, 1);
    let cert = params.signed_by(&key, issuer).map_err(tls)?;
    write_secret(&cert_path, cert.pem().as_bytes())?;
    write_secret(&key_path, key.serialize_pem().as_bytes())?;
    Ok(())
}

fn tls(e: rcgen::Error) -> AuthError {
    AuthError::Tls(e.to_string())
}
