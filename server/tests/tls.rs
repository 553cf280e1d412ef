//! `serve` over TLS (rustls): a real handshake against a certificate made by openssl, HSTS on
//! the answers, and clear errors for a missing or mismatched key.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dexlab_server::{ServeError, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

use crate::support::*;

/// A test CA and a P-256 server certificate it signed for localhost and 127.0.0.1, made by the
/// openssl CLI: (the CA's certificate, the server's certificate, the server's key).
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = |ext: &str| dir.join(format!("{name}.{ext}"));
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl (scripts/setup.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let s = |p: &PathBuf| p.display().to_string();
    let (ca, ca_key, csr, crt, key, ext) = (
        p("ca.crt"),
        p("ca.key"),
        p("csr"),
        p("crt"),
        p("key"),
        p("ext"),
    );
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    let (cas, cak) = (s(&ca), s(&ca_key));
    a.extend([
        "-keyout",
        &cak,
        "-out",
        &cas,
        "-days",
        "2",
        "-subj",
        "/CN=dexlab test CA",
    ]);
    run(&a);
    let mut a = vec!["req"];
    a.extend(ec);
    let (keys, csrs) = (s(&key), s(&csr));
    a.extend(["-keyout", &keys, "-out", &csrs, "-subj", "/CN=localhost"]);
    run(&a);
    let (crts, exts) = (s(&crt), s(&ext));
    run(&[
        "x509",
        "-req",
        "-in",
        &csrs,
        "-CA",
        &cas,
        "-CAkey",
        &cak,
        "-CAcreateserial",
        "-out",
        &crts,
        "-days",
        "2",
        "-extfile",
        &exts,
    ]);
    (ca, crt, key)
}

async fn https_get(addr: SocketAddr, ca: &Path, path: &str) -> anyhow::Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    // A close without close_notify is still the whole answer here.
    let _ = tls.read_to_end(&mut out).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn serves_https_with_hsts_and_refuses_bad_key_files() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (ca, cert, key) = certificate(dir.path(), "a");
    on_sqlite(|store| async move {
        let config = ServerConfig {
            tls: Some((cert.clone(), key.clone())),
            ..ServerConfig::default()
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(dexlab_server::serve(
            store.clone(),
            config,
            "127.0.0.1:0".parse()?,
            move |a| {
                let _ = tx.send(a);
            },
            async move {
                let _ = stop_rx.await;
            },
        ));
        let addr = rx.await?;
        let answer = https_get(addr, &ca, "/healthz").await?;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer
                .to_lowercase()
                .contains("strict-transport-security: max-age=31536000"),
            "{answer}"
        );
        // Plain HTTP to the TLS port gets no answer from the API.
        let mut plain = std::net::TcpStream::connect(addr)?;
        plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut buf = [0u8; 64];
        plain.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        let n = std::io::Read::read(&mut plain, &mut buf).unwrap_or(0);
        assert!(!String::from_utf8_lossy(&buf[..n]).contains("200"));
        // A client that does not trust the certificate is refused in the handshake.
        let (other, _, _) = certificate(dir.path(), "b");
        assert!(https_get(addr, &other, "/healthz").await.is_err());
        stop_tx.send(()).unwrap();
        server.await??;

        // A key that is not the certificate's, and a missing file: errors naming the file.
        let (_, _, wrong_key) = certificate(dir.path(), "c");
        for (c, k, says) in [
            (&cert, &wrong_key, "does not fit"),
            (&cert, &dir.path().join("missing.key"), "missing.key"),
        ] {
            let config = ServerConfig {
                tls: Some((c.clone(), k.clone())),
                ..ServerConfig::default()
            };
            let e = dexlab_server::serve(
                store.clone(),
                config,
                "127.0.0.1:0".parse()?,
                |_| {},
                async {},
            )
            .await
            .unwrap_err();
            assert!(matches!(e, ServeError::Tls { .. }), "{e}");
            assert!(e.to_string().contains(says), "{e}");
            let key_text = std::fs::read_to_string(&wrong_key)?;
            let key_body = key_text.lines().nth(1).unwrap();
            assert!(!e.to_string().contains(key_body), "the error shows the key");
        }
        Ok(())
    })
    .await
}
