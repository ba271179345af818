//! TLS over the counted TCP connection, with rustls: the same as ureq's own
//! connector, plus what it cannot tell: whether each handshake was a full
//! one (the server's certificate chain, kilobytes, and two round trips in
//! TLS 1.2) or a resumed one. One client config serves every connection of a
//! client, so its session cache (rustls' default: 256 sessions in memory,
//! TLS 1.3 tickets and TLS 1.2 ids or tickets) resumes sessions across the
//! new connections Kuzzle's closing of every connection forces.

use crate::error::{Error, Result, Status};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, RootCertStore};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

/// Connections opened and TLS handshakes, by kind, since the client began.
#[derive(Debug, Default)]
pub struct Connections {
    /// TCP connections opened.
    pub opened: AtomicU64,
    /// Requests sent on a connection a previous request had used (the
    /// server kept it alive: a reverse proxy, never Kuzzle itself).
    pub reused: AtomicU64,
    /// Of which found closed by the server before the request was written,
    /// and sent again on another connection.
    pub stale: AtomicU64,
    pub tls_full: AtomicU64,
    pub tls_resumed: AtomicU64,
}

/// The rustls client config of a client: roots (`caFile`, else Mozilla's,
/// built in), verification (on unless `tlsVerify` is false), TLS 1.2
/// and 1.3.
pub(super) fn client_config(
    ca: Option<Vec<CertificateDer<'static>>>,
    verify: bool,
) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(Status::KUZZLE_ERR_TLS, format!("TLS set-up: {e}")))?;
    let config = if !verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        match ca {
            Some(certs) => {
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(Error::new(
                        Status::KUZZLE_ERR_TLS,
                        "caFile: no usable CA certificate in it".to_string(),
                    ));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Wraps https connections in TLS, counting connections and handshakes.
#[derive(Debug)]
pub(super) struct TlsConnector {
    pub config: Arc<ClientConfig>,
    pub counts: Arc<Connections>,
}

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> std::result::Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        self.counts.opened.fetch_add(1, Ordering::Relaxed);
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details
            .uri
            .authority()
            .map(|a| a.host())
            .ok_or(ureq::Error::Tls(
                "no host to verify the certificate against",
            ))?;
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = ServerName::try_from(bare.to_string())
            .map_err(|_| ureq::Error::Tls("not a host name a certificate can name"))?;
        let mut conn = ClientConnection::new(self.config.clone(), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        // Counted from now, not from the start of the connection as ureq's
        // own does (not public): the handshake may take the TCP connect's
        // time more; the call's global timeout still bounds it.
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        let counter = match conn.handshake_kind() {
            Some(HandshakeKind::Resumed) => &self.counts.tls_resumed,
            _ => &self.counts.tls_full,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(TlsTransport {
            buffers,
            stream: rustls::StreamOwned { conn, sock },
        })))
    }
}

pub(super) struct TlsTransport {
    buffers: LazyBuffers,
    stream: rustls::StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsTransport")
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(
        &mut self,
        amount: usize,
        timeout: NextTimeout,
    ) -> std::result::Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> std::result::Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// `tlsVerify: false`: any certificate for any name (the signatures of
/// the handshake are still checked, so the session is at least whole).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
