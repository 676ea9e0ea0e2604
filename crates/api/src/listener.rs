//! How the ACME listener accepts connections, for the api binary and the
//! all-in-one alike.
//!
//! Every accepted socket gets `TCP_NODELAY`. Without it a response that
//! leaves in more than one segment (TLS records, headers then body) waits
//! for the client's delayed ACK: ~40 ms added to a few percent of requests,
//! which `bench/scenario1.sh` at C=4 showed as a finalize POST p95 of 42 ms
//! against a p50 of 2 ms. axum-server's default acceptor leaves Nagle on;
//! Go's servers (Pebble) turn it off.

use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_openssl::{OpenSSLAcceptor, OpenSSLConfig};

/// The HTTPS acceptor: TLS over sockets with `TCP_NODELAY`.
pub fn https_acceptor(tls: OpenSSLConfig) -> OpenSSLAcceptor<NoDelayAcceptor> {
    OpenSSLAcceptor::new(tls).acceptor(NoDelayAcceptor::new())
}

/// The plain-HTTP acceptor (behind a TLS-terminating proxy).
pub fn http_acceptor() -> NoDelayAcceptor {
    NoDelayAcceptor::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum_server::accept::Accept;

    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(tokio::net::TcpStream::connect(addr));
        let (socket, _) = listener.accept().await.unwrap();
        assert!(!socket.nodelay().unwrap(), "the kernel default is Nagle on");
        let (socket, ()) = http_acceptor().accept(socket, ()).await.unwrap();
        assert!(socket.nodelay().unwrap());
        drop(client.await);
    }
}
