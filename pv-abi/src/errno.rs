//! Xen error numbers (`xen/errno.h`).
//!
//! Every hypercall returns a signed value in `rax`: zero or a positive result on success,
//! or the negated error number on failure. [`Errno`] holds the positive number; it
//! converts to the return-register form with [`Errno::to_ret`] and back with
//! [`Errno::from_ret`].
//!
//! The numbers match Linux's on x86 for the values Xen uses, but they are Xen's own list:
//! a guest must not assume any other Linux errno can come back from a hypercall.

use core::fmt;

/// A Xen error number, stored as the positive value (`EINVAL` is 22).
///
/// Values outside Xen's list can still be represented (a peer may send anything in a
/// ring response or a hypercall may be answered by a newer hypervisor); [`Errno::name`]
/// then returns `"E?"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Errno(i32);

/// The largest magnitude a hypercall return value may have and still be an error.
///
/// Xen (like Linux) never returns an error number above 4095, so a return value in
/// `-4095..=-1` is an error and every other value is a result.
pub const MAX_ERRNO: i32 = 4095;

macro_rules! errno_table {
    ($( $(#[$doc:meta])* $name:ident = $value:literal ),* $(,)?) => {
        impl Errno {
            $(
                $(#[$doc])*
                pub const $name: Errno = Errno($value);
            )*

            /// Every error number Xen defines, in ascending order (aliases excluded).
            pub const ALL: &'static [Errno] = &[$(Errno::$name),*];

            /// The symbolic name of this error (`"EINVAL"`), or `"E?"` if Xen does not
            /// define the number.
            pub fn name(self) -> &'static str {
                match self.0 {
                    $($value => stringify!($name),)*
                    _ => "E?",
                }
            }
        }
    };
}

errno_table! {
    /// Operation not permitted.
    EPERM = 1,
    /// No such entry (file, object, port...).
    ENOENT = 2,
    /// No such domain or process.
    ESRCH = 3,
    /// Interrupted call. Internal to Xen; a guest should never see it.
    EINTR = 4,
    /// Input/output error.
    EIO = 5,
    /// No such device or address.
    ENXIO = 6,
    /// Argument list too long.
    E2BIG = 7,
    /// Executable format error.
    ENOEXEC = 8,
    /// Bad handle (file descriptor, port...).
    EBADF = 9,
    /// No child processes.
    ECHILD = 10,
    /// Resource temporarily unavailable; retry. Also known as `EWOULDBLOCK`.
    EAGAIN = 11,
    /// Out of memory.
    ENOMEM = 12,
    /// Permission denied.
    EACCES = 13,
    /// Bad address: a guest pointer could not be read or written.
    EFAULT = 14,
    /// Device or resource busy.
    EBUSY = 16,
    /// Object already exists.
    EEXIST = 17,
    /// Cross-device link.
    EXDEV = 18,
    /// No such device.
    ENODEV = 19,
    /// Not a directory.
    ENOTDIR = 20,
    /// Is a directory.
    EISDIR = 21,
    /// Invalid argument.
    EINVAL = 22,
    /// Too many objects open system-wide.
    ENFILE = 23,
    /// Too many objects open by this caller.
    EMFILE = 24,
    /// No space left.
    ENOSPC = 28,
    /// Read-only.
    EROFS = 30,
    /// Too many links.
    EMLINK = 31,
    /// Argument out of domain.
    EDOM = 33,
    /// Result out of range.
    ERANGE = 34,
    /// Deadlock would occur. Also known as `EDEADLOCK`.
    EDEADLK = 35,
    /// Name too long.
    ENAMETOOLONG = 36,
    /// No locks available.
    ENOLCK = 37,
    /// Function (hypercall or sub-operation) not implemented.
    ENOSYS = 38,
    /// Directory not empty.
    ENOTEMPTY = 39,
    /// No data available.
    ENODATA = 61,
    /// Timer expired.
    ETIME = 62,
    /// Bad message.
    EBADMSG = 74,
    /// Value too large for its type.
    EOVERFLOW = 75,
    /// Illegal byte sequence.
    EILSEQ = 84,
    /// The call must be restarted. Internal to Xen; a guest should never see it.
    ERESTART = 85,
    /// Not a socket.
    ENOTSOCK = 88,
    /// Message too large.
    EMSGSIZE = 90,
    /// Operation not supported.
    EOPNOTSUPP = 95,
    /// Address already in use.
    EADDRINUSE = 98,
    /// Address not available.
    EADDRNOTAVAIL = 99,
    /// No buffer space available.
    ENOBUFS = 105,
    /// Already connected.
    EISCONN = 106,
    /// Not connected.
    ENOTCONN = 107,
    /// Timed out.
    ETIMEDOUT = 110,
    /// Connection refused.
    ECONNREFUSED = 111,
}

impl Errno {
    /// Alias of [`Errno::EAGAIN`].
    pub const EWOULDBLOCK: Errno = Errno::EAGAIN;
    /// Alias of [`Errno::EDEADLK`].
    pub const EDEADLOCK: Errno = Errno::EDEADLK;

    /// Wraps a positive error number; `None` unless `1 <= v <= 4095`.
    ///
    /// Numbers Xen does not define are accepted (see the type's documentation).
    pub const fn new(v: i32) -> Option<Errno> {
        if v >= 1 && v <= MAX_ERRNO {
            Some(Errno(v))
        } else {
            None
        }
    }

    /// The positive error number.
    pub const fn get(self) -> i32 {
        self.0
    }

    /// The value a hypervisor puts in `rax` to report this error: `-errno`.
    pub const fn to_ret(self) -> i64 {
        -(self.0 as i64)
    }

    /// Decodes a hypercall return value: `-4095..=-1` is an error, anything else is the
    /// result, reinterpreted as unsigned.
    #[inline]
    pub fn from_ret(ret: i64) -> Result<u64, Errno> {
        if (-(MAX_ERRNO as i64)..0).contains(&ret) {
            Err(Errno(-ret as i32))
        } else {
            Ok(ret as u64)
        }
    }

    /// Whether Xen's `errno.h` defines this number.
    pub fn is_known(self) -> bool {
        Errno::ALL.contains(&self)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl core::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ret_round_trip() {
        for &e in Errno::ALL {
            assert_eq!(Errno::from_ret(e.to_ret()), Err(e));
            assert!(e.is_known());
        }
        assert_eq!(Errno::from_ret(0), Ok(0));
        assert_eq!(Errno::from_ret(0x0004_0011), Ok(0x0004_0011));
        assert_eq!(Errno::from_ret(-4096), Ok((-4096i64) as u64));
        assert_eq!(Errno::from_ret(-4095), Err(Errno::new(4095).unwrap()));
        assert_eq!(Errno::from_ret(i64::MIN), Ok(1 << 63));
    }

    #[test]
    fn constructor_bounds() {
        assert_eq!(Errno::new(0), None);
        assert_eq!(Errno::new(-22), None);
        assert_eq!(Errno::new(4096), None);
        assert_eq!(Errno::new(22), Some(Errno::EINVAL));
        assert_eq!(Errno::EINVAL.get(), 22);
        assert_eq!(Errno::ENOSYS.to_ret(), -38);
    }

    #[test]
    fn names_and_display() {
        assert_eq!(Errno::EWOULDBLOCK.name(), "EAGAIN");
        assert_eq!(Errno::new(1000).unwrap().name(), "E?");
        assert!(!Errno::new(1000).unwrap().is_known());
        assert_eq!(format!("{}", Errno::ENOSYS), "ENOSYS (38)");
        let mut sorted = Errno::ALL.to_vec();
        sorted.sort();
        assert_eq!(sorted, Errno::ALL);
    }
}
