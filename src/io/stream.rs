//! A TCP byte stream, plain or under TLS (rustls, as server or client), non-blocking: what
//! the web listener's connections and SIP over TCP and TLS read and write. TLS records
//! are pushed to the socket as far as it takes them; what it did not take waits in rustls
//! and [`Stream::tls_wants_write`] says so, for the reactor to ask for writability.

use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

/// TLS over one TCP socket.
pub struct TlsStream {
    conn: Connection,
    sock: TcpStream,
}

/// A connection's byte stream: plain TCP or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Stream {
    /// The server side of TLS on an accepted socket.
    pub fn tls_server(tcp: TcpStream, config: &Arc<ServerConfig>) -> Option<Stream> {
        let conn = ServerConnection::new(config.clone()).ok()?;
        Some(Stream::Tls(Box::new(TlsStream {
            conn: conn.into(),
            sock: tcp,
        })))
    }

    /// The client side of TLS toward `name` (checked against the server's certificate)
    /// on a socket that is connecting; the handshake starts once it is writable.
    pub fn tls_client(
        tcp: TcpStream,
        config: &Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Stream, rustls::Error> {
        let conn = ClientConnection::new(config.clone(), name)?;
        Ok(Stream::Tls(Box::new(TlsStream {
            conn: conn.into(),
            sock: tcp,
        })))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The socket under it (to register with the reactor, to learn a connect's outcome).
    pub fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &mut s.sock,
        }
    }

    /// Whether TLS records are waiting for the socket to take them.
    pub fn tls_wants_write(&self) -> bool {
        matches!(self, Stream::Tls(s) if s.conn.wants_write())
    }

    /// Pushes pending TLS records (handshake or data) out; Err when broken.
    pub fn push_tls(&mut self) -> io::Result<()> {
        if let Stream::Tls(s) = self {
            while s.conn.wants_write() {
                match s.conn.write_tls(&mut s.sock) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => {
                // Take in what the socket has, then hand out plaintext; answer the
                // handshake as it goes. Bounded: each turn reads from the socket, which
                // ends in data, WouldBlock, EOF or an error.
                loop {
                    match s.conn.reader().read(buf) {
                        Ok(n) => return Ok(n),
                        Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                        Err(_) => {}
                    }
                    match s.conn.read_tls(&mut s.sock) {
                        Ok(0) => return Ok(0),
                        Ok(_) => {
                            if let Err(e) = s.conn.process_new_packets() {
                                // srgate's own connection (to sip_svr) failing is the
                                // operator's business; a client's failure is the client's
                                let level = match s.conn {
                                    Connection::Client(_) => log::Level::Warn,
                                    Connection::Server(_) => log::Level::Debug,
                                };
                                let peer = s.sock.peer_addr().ok();
                                log::log!(level, "TLS with {peer:?}: {e}");
                                // what rustls has to say (an alert) goes out first
                                let _ = s.conn.write_tls(&mut s.sock);
                                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                            }
                            while s.conn.wants_write() {
                                match s.conn.write_tls(&mut s.sock) {
                                    Ok(_) => {}
                                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                                    Err(e) => return Err(e),
                                }
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => {
                let n = s.conn.writer().write(buf)?;
                self.push_tls()?;
                if n == 0 && !buf.is_empty() {
                    // rustls' buffer is full: the socket must take records first
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(_) => {
                self.push_tls()?;
                if self.tls_wants_write() {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(())
                }
            }
        }
    }
}
