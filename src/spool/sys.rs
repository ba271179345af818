//! The one system call std does not offer at our MSRV (1.85): `flock`.
//! (fdatasync is std's `File::sync_data`, which is fdatasync on Linux.)

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Takes the exclusive lock of `file` without waiting: `Ok(false)` when
/// another open file description holds it. The lock goes with the
/// descriptor, so a killed process releases it.
pub(super) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: `flock` takes no pointer; the descriptor stays open for the
        // duration of the call because `file` is borrowed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(code) if code == libc::EWOULDBLOCK => return Ok(false),
            _ => return Err(err),
        }
    }
}

/// The held lock. Released explicitly when dropped: a child process forked
/// by the host (or by another thread) between our open and its exec shares
/// the open file description, and closing our descriptor alone would leave
/// the spool locked until that child execs or ends.
#[derive(Debug)]
pub(super) struct Held(pub(super) File);

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: `flock` takes no pointer; the descriptor is open until
        // `self.0` drops, after this.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}
