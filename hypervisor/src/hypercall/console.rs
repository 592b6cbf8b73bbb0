//! `console_io`: the hypervisor console as a guest's earliest output device.
//!
//! Output is gathered per domain into lines, sanitised (only printable ASCII, spaces and
//! tabs reach the serial port, so no guest can drive the terminal with escape sequences)
//! and printed with the domain's id and name. Every domain may write (a policy choice,
//! recorded in docs/abi.md; Xen keeps this to privileged domains in release builds).

use super::{Console, Context};
use crate::domain::Domain;
use crate::mm::PhysMem;
use pv_abi::errno::Errno;
use pv_abi::xen::{CONSOLEIO_READ, CONSOLEIO_WRITE, Hypercall};

/// Bytes copied per step; longer writes continue in further steps.
const CHUNK: usize = 128;
/// Bytes handled before the hypercall is continued (so a huge count cannot hog the CPU).
const PER_CALL: u64 = 16 * 1024;
/// Serial bytes printed before the hypercall is continued. The port is polled with
/// interrupts off (about 87 us a byte at 115200 baud), and one guest byte can print a
/// whole prefixed line (a newline): bounding the guest's bytes alone let one call hold
/// ring 0 for tens of seconds on real hardware (found by review). About 1 KiB is under
/// 0.1 s, and other domains run between the continued calls.
const SERIAL_PER_CALL: usize = 1024;

pub(super) fn console_io<M: PhysMem>(
    ctx: &mut Context<'_, M>,
    cmd: u64,
    count: u64,
    buffer: u64,
) -> Result<u64, Errno> {
    match u32::try_from(cmd) {
        Ok(CONSOLEIO_WRITE) => {
            let now = count.min(PER_CALL);
            let mut done = 0u64;
            let mut printed = 0usize;
            'copy: while done < now {
                let n = ((now - done) as usize).min(CHUNK);
                let mut chunk = [0u8; CHUNK];
                ctx.guest.read(buffer.wrapping_add(done), &mut chunk[..n])?;
                for &byte in &chunk[..n] {
                    printed += push_byte(ctx.domain, ctx.console, byte);
                    done += 1;
                    if printed >= SERIAL_PER_CALL {
                        break 'copy;
                    }
                }
            }
            if count > done {
                let args = [cmd, count - done, buffer.wrapping_add(done), 0, 0];
                return Ok(ctx.continuation(Hypercall::ConsoleIo as u64, args));
            }
            Ok(0)
        }
        // No console input yet: reading returns no bytes.
        Ok(CONSOLEIO_READ) => Ok(0),
        _ => Err(Errno::ENOSYS),
    }
}

/// Buffers or prints one guest byte; returns at most how many serial bytes that printed.
fn push_byte(domain: &mut Domain, console: &mut dyn Console, byte: u8) -> usize {
    match byte {
        b'\n' => flush_line(domain, console),
        b'\r' => 0,
        b' '..=b'~' | b'\t' => {
            let mut printed = 0;
            if domain.console_line.push(byte).is_err() {
                printed = flush_line(domain, console);
                let _ = domain.console_line.push(byte);
            }
            printed
        }
        _ => {
            let _ = domain.console_line.push(b'?');
            0
        }
    }
}

/// Prints whatever the domain has buffered as one line; returns at most how many serial
/// bytes that was (the line, the `(dN name) ` prefix with up to five digits, the newline).
pub fn flush_line(domain: &mut Domain, console: &mut dyn Console) -> usize {
    // Only printable ASCII is ever buffered, so this is valid UTF-8.
    let line = core::str::from_utf8(&domain.console_line).unwrap_or("");
    console.guest_line(domain.id, &domain.name, line);
    let printed = line.len() + domain.name.len() + "(d65535 ) \n".len();
    domain.console_line.clear();
    printed
}

#[cfg(test)]
mod tests {
    use super::super::tests::{BUF, World};
    use super::*;

    #[test]
    fn writes_lines_with_the_domain_prefix_and_sanitises() {
        let mut world = World::new();
        world.put(0, b"hello\nwor\x1b[2Jld\n");
        let (ret, _) = world.call(18, [u64::from(CONSOLEIO_WRITE), 17, BUF, 0, 0]);
        assert_eq!(ret, 0);
        assert_eq!(world.lines.0, ["(d1 test) hello", "(d1 test) wor?[2Jld"]);
    }

    #[test]
    fn refuses_bad_buffers_and_commands() {
        let mut world = World::new();
        assert_eq!(world.call(18, [0, 16, 0x1000, 0, 0]).0, -14, "unmapped");
        assert_eq!(
            world.call(18, [0, 16, 0xffff_8300_0000_0000, 0, 0]).0,
            -14,
            "hypervisor"
        );
        assert_eq!(
            write_all(&mut world, 8200, BUF),
            -14,
            "runs off the mapping"
        );
        assert_eq!(world.call(18, [7, 1, BUF, 0, 0]).0, -38);
        assert_eq!(
            world.call(18, [1, 16, BUF, 0, 0]).0,
            0,
            "read gives no bytes"
        );
    }

    /// `console_io(CONSOLEIO_WRITE, count, buffer)` followed through its continuations,
    /// as the guest's re-executed `syscall` would: the final rax, and how many calls.
    fn write_all_counted(world: &mut World, count: u64, buffer: u64) -> (i64, usize) {
        let mut args = [u64::from(CONSOLEIO_WRITE), count, buffer, 0, 0];
        for calls in 1..10_000 {
            let (rax, _) = world.call(18, args);
            if rax != Hypercall::ConsoleIo as i64 {
                return (rax, calls);
            }
            let regs = world.last_regs;
            args = [regs.rdi, regs.rsi, regs.rdx, 0, 0];
        }
        panic!("console_io never finished");
    }

    fn write_all(world: &mut World, count: u64, buffer: u64) -> i64 {
        write_all_counted(world, count, buffer).0
    }

    /// A buffer of newlines prints a prefixed empty line per byte: each call prints
    /// about SERIAL_PER_CALL serial bytes and continues, and every line comes out.
    #[test]
    fn newlines_are_printed_a_bounded_amount_per_call() {
        let mut world = World::new();
        world.put(0, &[b'\n'; 4096]);
        world.put(4096, &[b'\n'; 4096]);
        let (rax, calls) = write_all_counted(&mut world, 8192, BUF);
        assert_eq!(rax, 0);
        assert_eq!(world.lines.0.len(), 8192, "every line printed");
        let per_line = "(d1 test) \n".len();
        let lines_per_call = SERIAL_PER_CALL.div_ceil(per_line);
        assert!(calls >= 8192 / lines_per_call, "{calls} calls");
        // The first call alone printed no more than the budget and one line.
        let mut first = World::new();
        first.put(0, &[b'\n'; 4096]);
        let (rax, _) = first.call(18, [u64::from(CONSOLEIO_WRITE), 4096, BUF, 0, 0]);
        assert_eq!(rax, Hypercall::ConsoleIo as i64, "continued");
        assert!(first.lines.0.len() * per_line <= SERIAL_PER_CALL + per_line);
    }

    #[test]
    fn long_lines_are_split_not_lost() {
        let mut world = World::new();
        world.put(0, &[b'x'; 400]);
        world.put(400, b"\n");
        assert_eq!(world.call(18, [0, 401, BUF, 0, 0]).0, 0);
        let total: usize = world
            .lines
            .0
            .iter()
            .map(|l| l.len() - "(d1 test) ".len())
            .sum();
        assert_eq!(total, 400);
    }
}
