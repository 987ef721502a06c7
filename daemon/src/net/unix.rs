//! Connecting to a unix-socket server: a socket file, or a name in Linux's abstract namespace
//! zero-padded to the whole `sun_path` as HAProxy 2.6 writes `abns@` addresses (so tether
//! reaches the same socket an HAProxy `abns@` bind or server names).

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;

use socket2::{Domain, SockAddr, Socket, Type};
use tether_core::config::{UnixAddress, MAX_UNIX_NAME};
use tokio::net::UnixStream;

/// Non-blocking connect to `addr`; waits until the socket is connected or refused.
pub async fn connect(addr: UnixAddress<'_>) -> io::Result<UnixStream> {
    let target = sockaddr(addr)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None)?;
    match socket.connect(&target) {
        Ok(()) => {}
        // A full listen backlog: wait for room as for a TCP handshake.
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    let stream = UnixStream::from_std(std::os::unix::net::UnixStream::from(socket))?;
    stream.writable().await?;
    match stream.take_error()? {
        Some(e) => Err(e),
        None => Ok(stream),
    }
}

/// The `sockaddr_un` of `addr`.
pub fn sockaddr(addr: UnixAddress<'_>) -> io::Result<SockAddr> {
    match addr {
        UnixAddress::Path(path) => SockAddr::unix(path),
        UnixAddress::Abstract(name) => {
            if name.len() > MAX_UNIX_NAME {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("abns@{name}: longer than {MAX_UNIX_NAME} bytes"),
                ));
            }
            let mut padded = [0u8; MAX_UNIX_NAME + 1];
            padded[1..=name.len()].copy_from_slice(name.as_bytes());
            SockAddr::unix(OsStr::from_bytes(&padded))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A listener on `addr` bound the way HAProxy binds it.
    fn listen(addr: UnixAddress<'_>) -> tokio::net::UnixListener {
        let socket = Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None).unwrap();
        socket.bind(&sockaddr(addr).unwrap()).unwrap();
        socket.listen(16).unwrap();
        tokio::net::UnixListener::from_std(socket.into()).unwrap()
    }

    #[tokio::test]
    async fn connects_to_socket_files_and_padded_abstract_names() {
        let dir = std::env::temp_dir().join(format!("tether-unix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let path = path.to_str().unwrap().to_string();
        let abstract_name = format!("tether-test-{}", std::process::id());
        for addr in [
            UnixAddress::Path(&path),
            UnixAddress::Abstract(&abstract_name),
        ] {
            let listener = listen(addr);
            let mut client = connect(addr).await.unwrap();
            let (mut served, _) = listener.accept().await.unwrap();
            client.write_all(b"ping").await.unwrap();
            let mut got = [0u8; 4];
            served.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"ping", "{addr:?}");
        }
        // The same abstract name without the padding is another socket: refused.
        let short = SockAddr::unix(OsStr::from_bytes(
            &[b"\0".as_slice(), abstract_name.as_bytes()].concat(),
        ))
        .unwrap();
        let raw = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        assert!(raw.connect(&short).is_err());
        // A socket file nobody listens on: refused, as a closed TCP port.
        std::fs::remove_file(&path).unwrap();
        let err = connect(UnixAddress::Path(&path)).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        let _ = std::fs::remove_dir(&dir);
    }
}
