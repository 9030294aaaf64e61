//! Listening sockets with Chopin's options (socket2): `SO_REUSEADDR`, the listen backlog, and
//! `SO_REUSEPORT` for per-core workers (each worker binds its own socket to the same address;
//! the kernel spreads new connections over them).

use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Bind a non-blocking listening socket on `addr` with a listen queue of `backlog`, and
/// `SO_REUSEPORT` when `reuse_port` (Unix only; elsewhere that is an `Unsupported` error).
///
/// The socket is a `std` listener so that it can be handed to any tokio runtime
/// (`tokio::net::TcpListener::from_std` inside that runtime).
pub fn bind(addr: SocketAddr, backlog: u32, reuse_port: bool) -> io::Result<StdTcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Restarting the server must not wait for the old sockets' TIME_WAIT to end.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    if reuse_port {
        #[cfg(all(
            unix,
            not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
        ))]
        socket.set_reuse_port(true)?;
        #[cfg(not(all(
            unix,
            not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
        )))]
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_REUSEPORT (per-core workers) is not available on this platform",
        ));
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// The first address `host:port` resolves to.
pub(crate) async fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the host resolved to nothing"))
}
