//! The channel between a running tether and the successor it starts on `SIGUSR2`: a unix
//! `SOCK_SEQPACKET` socket pair (message boundaries kept, so a message never arrives half or
//! glued to the next), the successor's end handed to it as its standard input. Listening
//! sockets cross it as `SCM_RIGHTS` ancillary data, one per message, as HAProxy's `-x`,
//! Envoy's hot restart and pingora pass theirs.
//!
//! The conversation, old → new unless marked:
//! `Listener(name)`+fd …, `Entries` …, `Start`; new → old: `Ready(pid)`;
//! then `Entries` … (what the old process learned meanwhile), `Final`.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustix::net::{
    recvmsg, sendmsg, socketpair, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage,
    RecvFlags, ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags,
    SocketType,
};

/// The largest message either side sends or accepts (a chunk of stick-table entries).
pub const MAX_MESSAGE: usize = 32 * 1024;

/// One message of the handover conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A listening socket (its descriptor rides along), named as in the registry of
    /// [`super::inherited`] (`frontend 127.0.0.1:443`, `stats 127.0.0.1:8404`).
    Listener(String),
    /// A chunk of stick-table entries ([`super::table_transfer`] encoding).
    Entries(Vec<u8>),
    /// Everything the successor needs to start has been sent.
    Start,
    /// From the successor: serving on the handed-over sockets, as process `pid`.
    Ready(u32),
    /// The old process accepts no more; no entries follow.
    Final,
}

/// Why a handover message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    /// The socket failed (or a read timed out).
    #[error("handover socket: {0}")]
    Io(#[from] io::Error),
    /// The bytes are not a message of this protocol.
    #[error("handover message malformed: {0}")]
    Malformed(&'static str),
}

const TAG_LISTENER: u8 = b'L';
const TAG_ENTRIES: u8 = b'E';
const TAG_START: u8 = b'S';
const TAG_READY: u8 = b'R';
const TAG_FINAL: u8 = b'F';

impl Message {
    /// The message's bytes: a tag, then its payload.
    pub fn encode(&self) -> Vec<u8> {
        let (tag, payload): (u8, &[u8]) = match self {
            Message::Listener(name) => (TAG_LISTENER, name.as_bytes()),
            Message::Entries(bytes) => (TAG_ENTRIES, bytes),
            Message::Start => (TAG_START, &[]),
            Message::Ready(pid) => return [&[TAG_READY][..], &pid.to_be_bytes()].concat(),
            Message::Final => (TAG_FINAL, &[]),
        };
        [&[tag][..], payload].concat()
    }

    /// Parses one message's bytes.
    pub fn decode(bytes: &[u8]) -> Result<Message, HandoverError> {
        let (&tag, payload) = bytes
            .split_first()
            .ok_or(HandoverError::Malformed("empty message"))?;
        let bare = |m: Message| {
            if payload.is_empty() {
                Ok(m)
            } else {
                Err(HandoverError::Malformed("payload on a bare message"))
            }
        };
        match tag {
            TAG_LISTENER => std::str::from_utf8(payload)
                .map(|s| Message::Listener(s.to_string()))
                .map_err(|_| HandoverError::Malformed("listener name is not UTF-8")),
            TAG_ENTRIES => Ok(Message::Entries(payload.to_vec())),
            TAG_START => bare(Message::Start),
            TAG_READY => <[u8; 4]>::try_from(payload)
                .map(|b| Message::Ready(u32::from_be_bytes(b)))
                .map_err(|_| HandoverError::Malformed("ready without a 4-byte pid")),
            TAG_FINAL => bare(Message::Final),
            _ => Err(HandoverError::Malformed("unknown message tag")),
        }
    }
}

/// One end of the handover channel (blocking).
#[derive(Debug)]
pub struct Channel {
    socket: UnixStream,
}

impl Channel {
    /// A connected pair: this process's end, and the end to give the successor (both
    /// close-on-exec; standard input is inherited as a copy without the flag).
    pub fn pair() -> io::Result<(Channel, OwnedFd)> {
        let (ours, theirs) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?;
        Ok((Channel::from_fd(ours), theirs))
    }

    /// The channel on an inherited descriptor (the successor's standard input).
    pub fn from_fd(fd: OwnedFd) -> Channel {
        Channel {
            socket: UnixStream::from(fd),
        }
    }

    /// Bounds how long [`Channel::recv`] waits (`None`: forever).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket.set_read_timeout(timeout)
    }

    /// Sends `message`, with `fd` as `SCM_RIGHTS` when given.
    pub fn send(&self, message: &Message, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let bytes = message.encode();
        if bytes.len() > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "handover message too large",
            ));
        }
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds;
        if let Some(fd) = fd {
            fds = [fd];
            control.push(SendAncillaryMessage::ScmRights(&fds));
        }
        let sent = sendmsg(
            self.socket.as_fd(),
            &[IoSlice::new(&bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        )?;
        if sent != bytes.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "handover message cut",
            ));
        }
        Ok(())
    }

    /// The next message and the descriptor that came with it; `None` once the other end has
    /// closed. Descriptors arrive close-on-exec; more than one on a message is an error (the
    /// extra ones are closed).
    pub fn recv(&self) -> Result<Option<(Message, Option<OwnedFd>)>, HandoverError> {
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = loop {
            match recvmsg(
                self.socket.as_fd(),
                &mut [IoSliceMut::new(&mut buf)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            ) {
                Err(rustix::io::Errno::INTR) => continue,
                r => break r.map_err(io::Error::from)?,
            }
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = m {
                fds.extend(received);
            }
        }
        if got.flags.contains(ReturnFlags::CTRUNC) {
            return Err(HandoverError::Malformed(
                "too many descriptors on one message",
            ));
        }
        if got.bytes == 0 && fds.is_empty() {
            return Ok(None);
        }
        if got.bytes > MAX_MESSAGE || got.flags.contains(ReturnFlags::TRUNC) {
            return Err(HandoverError::Malformed("message too large"));
        }
        if fds.len() > 1 {
            return Err(HandoverError::Malformed(
                "more than one descriptor on a message",
            ));
        }
        Ok(Some((Message::decode(&buf[..got.bytes])?, fds.pop())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_listening_socket_crosses_and_accepts_what_was_queued_on_the_original() {
        let (old, theirs) = Channel::pair().unwrap();
        let new = Channel::from_fd(theirs);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // A client connects before the handover: it waits in the shared accept queue.
        let mut early = TcpStream::connect(addr).unwrap();
        old.send(
            &Message::Listener("frontend 127.0.0.1:0".into()),
            Some(listener.as_fd()),
        )
        .unwrap();
        old.send(&Message::Start, None).unwrap();
        drop(listener); // the old process closes its copy: the socket lives on in the new
        let (m, fd) = new.recv().unwrap().unwrap();
        assert_eq!(m, Message::Listener("frontend 127.0.0.1:0".into()));
        let inherited = TcpListener::from(fd.expect("the descriptor came along"));
        assert_eq!(inherited.local_addr().unwrap(), addr);
        let (mut accepted, _) = inherited.accept().unwrap();
        early.write_all(b"queued").unwrap();
        let mut got = [0u8; 6];
        accepted.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"queued");
        let (m, fd) = new.recv().unwrap().unwrap();
        assert_eq!((m, fd.is_none()), (Message::Start, true));
        // Replies go back the other way; a closed end reads as the end.
        new.send(&Message::Ready(77), None).unwrap();
        drop(new);
        assert_eq!(old.recv().unwrap().unwrap().0, Message::Ready(77));
        assert!(old.recv().unwrap().is_none());
    }

    #[test]
    fn message_boundaries_hold_and_waiting_is_bounded() {
        let (a, b) = Channel::pair().unwrap();
        let b = Channel::from_fd(b);
        for i in 0..20u8 {
            a.send(&Message::Entries(vec![i; usize::from(i) * 100]), None)
                .unwrap();
        }
        for i in 0..20u8 {
            let (m, _) = b.recv().unwrap().unwrap();
            assert_eq!(m, Message::Entries(vec![i; usize::from(i) * 100]));
        }
        b.set_timeout(Some(Duration::from_millis(50))).unwrap();
        assert!(matches!(b.recv(), Err(HandoverError::Io(_))), "timed out");
        let big = Message::Entries(vec![0; MAX_MESSAGE]);
        assert!(a.send(&big, None).is_err(), "oversized refused");
    }

    #[test]
    fn hostile_messages_are_errors() {
        let (a, b) = Channel::pair().unwrap();
        let b = Channel::from_fd(b);
        let raw = |bytes: &[u8]| {
            rustix::net::send(a.socket.as_fd(), bytes, SendFlags::NOSIGNAL).unwrap();
            b.recv()
        };
        assert!(matches!(raw(b"?x"), Err(HandoverError::Malformed(_))));
        assert!(matches!(raw(b"R12"), Err(HandoverError::Malformed(_))));
        assert!(matches!(raw(b"Sx"), Err(HandoverError::Malformed(_))));
        assert!(matches!(
            raw(&vec![b'E'; MAX_MESSAGE + 100]),
            Err(HandoverError::Malformed(_))
        ));
        // Two descriptors on one message: refused, both closed.
        let l1 = TcpListener::bind("127.0.0.1:0").unwrap();
        let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds = [l1.as_fd(), l2.as_fd()];
        control.push(SendAncillaryMessage::ScmRights(&fds));
        sendmsg(
            a.socket.as_fd(),
            &[IoSlice::new(b"Lx")],
            &mut control,
            SendFlags::NOSIGNAL,
        )
        .unwrap();
        assert!(matches!(b.recv(), Err(HandoverError::Malformed(_))));
        // The channel still works after a bad message.
        a.send(&Message::Final, None).unwrap();
        assert_eq!(b.recv().unwrap().unwrap().0, Message::Final);
    }

    proptest! {
        #[test]
        fn messages_roundtrip_and_any_bytes_decode_without_panicking(
            name in "[ -~]{0,40}",
            entries in proptest::collection::vec(any::<u8>(), 0..200),
            pid in any::<u32>(),
            noise in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            for m in [
                Message::Listener(name.clone()),
                Message::Entries(entries.clone()),
                Message::Start,
                Message::Ready(pid),
                Message::Final,
            ] {
                prop_assert_eq!(Message::decode(&m.encode()).unwrap(), m);
            }
            let _ = Message::decode(&noise);
        }
    }
}
