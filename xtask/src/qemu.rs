//! Starting QEMU and watching its serial console.
//!
//! The console is QEMU's stdout (`-serial stdio`). [`run`] streams it live to the user's
//! terminal (when asked) and to a log file, keeps a copy for the checks, hands every line
//! to a [`ConsoleWatcher`] that may decide the run is over, and enforces the timeout by
//! killing QEMU. QEMU's stdin is /dev/null, or a pipe carrying a scenario's scripted
//! console input: never the terminal, which QEMU would put in raw mode and a killed QEMU
//! could not restore.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::workspace::Workspace;

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// QEMU's accelerator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// Software emulation: works everywhere, the default.
    #[default]
    Tcg,
    /// KVM. On this project's machines /dev/kvm is kvm-pvm, which cannot run ring-0 SSE
    /// code: do not use it there (see docs/xtask.md).
    Kvm,
}

impl Accel {
    fn name(self) -> &'static str {
        match self {
            Self::Tcg => "tcg",
            Self::Kvm => "kvm",
        }
    }
}

/// QEMU arguments shared by every run: no display, no monitor, console on stdio, and no
/// reboot (a reset ends QEMU with status 0, which the exit protocol treats as failure).
fn base_command(accel: Accel, cpu: &str, memory_mib: u64) -> Command {
    let mut command = Command::new(QEMU);
    command
        .args(["-accel", accel.name(), "-cpu", cpu])
        .args(["-m", &memory_mib.to_string(), "-smp", "1"])
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ]);
    command
}

/// Makes `command`'s guest time count guest instructions, one nanosecond each: the TSC,
/// the timers and the RTC follow the virtual clock, and an idle machine skips ahead to its
/// next timer instead of sleeping, so a run is repeatable on any host.
pub fn count_instructions(command: &mut Command) {
    command.args(["-icount", "shift=0,sleep=off", "-rtc", "clock=vm"]);
}

/// QEMU booting our hypervisor (PVH) with the boot image as its one module.
pub fn our_hypervisor_command(
    hypervisor: &Path,
    cmdline: &str,
    memory_mib: u64,
    image: &Path,
    accel: Accel,
) -> Command {
    let mut command = base_command(accel, "max", memory_mib);
    command
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-kernel")
        .arg(hypervisor)
        .arg("-append")
        .arg(cmdline)
        .arg("-initrd")
        .arg(image);
    command
}

/// QEMU booting real Xen (multiboot) with `kernel` as dom0.
///
/// `-cpu max,-smap` works around a QEMU 7.2 TCG bug that faults a ring-3 `iretq` under
/// SMAP (see /work/shared/notes/xen-abi.md and docs/xtask.md).
pub fn xen_command(
    xen: &Path,
    xen_cmdline: &str,
    memory_mib: u64,
    kernel: &Path,
    kernel_cmdline: &str,
    accel: Accel,
) -> Result<Command> {
    let kernel = kernel.to_str().context("kernel path is not UTF-8")?;
    // QEMU's multiboot `-initrd` splits modules at `,` (`,,` is a literal comma) and a
    // module's path from its command line at the first space.
    ensure!(
        !kernel.contains([' ', ',']),
        "kernel path `{kernel}` contains a space or comma"
    );
    // The kernel is also dom0's initial module (the second): its domain builder makes
    // copies of it (pv-guest-kernel's builder.rs).
    let module = if kernel_cmdline.is_empty() {
        format!("{kernel},{kernel}")
    } else {
        format!("{kernel} {},{kernel}", kernel_cmdline.replace(',', ",,"))
    };
    let mut command = base_command(accel, "max,-smap", memory_mib);
    command
        .arg("-kernel")
        .arg(xen)
        .arg("-append")
        .arg(xen_cmdline)
        .arg("-initrd")
        .arg(module);
    Ok(command)
}

/// What a [`ConsoleWatcher`] wants after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep running.
    Continue,
    /// The run is over: stop QEMU after at most this long (to collect trailing output).
    StopWithin(Duration),
}

/// Reads the console line by line and decides when a run is over.
pub trait ConsoleWatcher {
    /// One line of output, without its line ending.
    fn line(&mut self, line: &str) -> Verdict;
}

/// A watcher that never stops the run: QEMU ends it (our hypervisor's exit port).
#[derive(Debug)]
pub struct UntilExit;

impl ConsoleWatcher for UntilExit {
    fn line(&mut self, _line: &str) -> Verdict {
        Verdict::Continue
    }
}

/// How QEMU ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// QEMU exited by itself, with this status (`None`: killed by a signal).
    Exited(Option<i32>),
    /// The run's time limit passed; QEMU was killed.
    TimedOut(Duration),
    /// The watcher ended the run; QEMU was killed.
    Stopped,
}

/// The result of [`run`].
#[derive(Debug)]
pub struct Capture {
    /// How QEMU ended.
    pub end: End,
    /// Everything QEMU printed (stdout and stderr, interleaved), lossily decoded.
    pub output: String,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

/// Where the console goes while the run is live (and what is typed on it).
#[derive(Debug)]
pub struct Sinks<'a> {
    /// Copy output to this process's stdout/stderr as it arrives.
    pub echo: bool,
    /// Write output to this log file as it arrives.
    pub log: Option<&'a Path>,
    /// Bytes typed on the serial console when QEMU starts (the guest reads them when it
    /// polls); empty for none.
    pub input: &'a [u8],
}

/// A piece of QEMU's output, or the end of one of its streams.
enum Chunk {
    Data(Stream, Vec<u8>),
    Closed(Stream),
}

/// QEMU's two output streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Stdout = 0,
    Stderr = 1,
}

/// Runs `command` to its end, a watcher's stop, or `timeout`.
pub fn run(
    mut command: Command,
    timeout: Duration,
    sinks: &Sinks<'_>,
    watcher: &mut dyn ConsoleWatcher,
) -> Result<Capture> {
    let mut log = match sinks.log {
        Some(path) => {
            Some(File::create(path).with_context(|| format!("creating {}", path.display()))?)
        }
        None => None,
    };
    let start = Instant::now();
    let stdin = if sinks.input.is_empty() {
        Stdio::null()
    } else {
        Stdio::piped()
    };
    let mut child = command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {QEMU} (is it installed?)"))?;
    // Typed once the guest has printed something: it has set up its UART by then (a
    // 16550 discards what it received when its FIFOs are switched on). A thread keeps a
    // full pipe from blocking the run; a write error (QEMU gone) is the run's end,
    // reported there.
    let (typing_go, typing_wait) = mpsc::channel::<()>();
    let mut typing_go = Some(typing_go);
    if let Some(mut pipe) = child.stdin.take() {
        let input = sinks.input.to_vec();
        std::thread::spawn(move || {
            if typing_wait.recv().is_ok() {
                let _ = pipe.write_all(&input);
            }
        });
    }
    let (sender, receiver) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        forward(stdout, Stream::Stdout, sender.clone());
    }
    if let Some(stderr) = child.stderr.take() {
        forward(stderr, Stream::Stderr, sender);
    }

    let mut watch = Watch {
        output: Vec::new(),
        partial: [Vec::new(), Vec::new()],
        stop_at: None,
        watcher,
    };
    let mut open_streams = 2;
    let deadline = start + timeout;
    let end = loop {
        let until = watch.stop_at.map_or(deadline, |stop| stop.min(deadline));
        // Checked before every receive: a flooding console never lets recv time out.
        let message = match until.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => receiver.recv_timeout(left),
            _ => Err(RecvTimeoutError::Timeout),
        };
        match message {
            Ok(Chunk::Data(stream, bytes)) => {
                if let Some(go) = typing_go.take() {
                    let _ = go.send(());
                }
                watch.take(stream, &bytes, sinks.echo, log.as_mut())?
            }
            Ok(Chunk::Closed(stream)) => {
                watch.flush_partial(stream);
                open_streams -= 1;
                if open_streams == 0 {
                    break wait_for_exit(&mut child, deadline, timeout)?;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                break wait_for_exit(&mut child, deadline, timeout)?;
            }
            Err(RecvTimeoutError::Timeout) => {
                kill(&mut child);
                let stopped = watch.stop_at.is_some_and(|stop| stop < deadline);
                break if stopped {
                    End::Stopped
                } else {
                    End::TimedOut(timeout)
                };
            }
        }
    };
    watch.flush_partial(Stream::Stdout);
    watch.flush_partial(Stream::Stderr);
    let output = String::from_utf8_lossy(&watch.output).into_owned();
    Ok(Capture {
        end,
        output,
        elapsed: start.elapsed(),
    })
}

/// Copies a pipe into the channel from a thread of its own.
fn forward(mut pipe: impl Read + Send + 'static, stream: Stream, sender: Sender<Chunk>) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        loop {
            match pipe.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sender
                        .send(Chunk::Data(stream, buffer[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        // The receiver may be gone already; nothing to do then.
        let _ = sender.send(Chunk::Closed(stream));
    });
}

/// The console state of a live run.
struct Watch<'w> {
    output: Vec<u8>,
    /// Incomplete last line of stdout and of stderr.
    partial: [Vec<u8>; 2],
    stop_at: Option<Instant>,
    watcher: &'w mut dyn ConsoleWatcher,
}

impl Watch<'_> {
    fn take(
        &mut self,
        stream: Stream,
        bytes: &[u8],
        echo: bool,
        log: Option<&mut File>,
    ) -> Result<()> {
        if echo {
            // Echo failures (a closed terminal) must not end the run.
            let _ = match stream {
                Stream::Stdout => write_flush(&mut std::io::stdout().lock(), bytes),
                Stream::Stderr => write_flush(&mut std::io::stderr().lock(), bytes),
            };
        }
        // A runaway guest can flood the console: keep the first MAX_CAPTURE bytes only.
        let room = MAX_CAPTURE.saturating_sub(self.output.len());
        if room > 0 {
            let mut kept = bytes[..bytes.len().min(room)].to_vec();
            if kept.len() < bytes.len() {
                kept.extend_from_slice(TRUNCATED.as_bytes());
            }
            if let Some(log) = log {
                log.write_all(&kept).context("writing the log")?;
            }
            self.output.extend_from_slice(&kept);
        }
        // Split into lines, scanning each byte once.
        let mut partial = std::mem::take(&mut self.partial[stream as usize]);
        let mut rest = bytes;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            partial.extend_from_slice(&rest[..newline]);
            rest = &rest[newline + 1..];
            self.see(&partial);
            partial.clear();
        }
        partial.extend_from_slice(rest);
        if partial.len() > MAX_LINE {
            self.see(&partial);
            partial.clear();
        }
        self.partial[stream as usize] = partial;
        Ok(())
    }

    /// Hands a complete line to the watcher.
    fn see(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']);
        if let Verdict::StopWithin(grace) = self.watcher.line(text) {
            let stop = Instant::now() + grace;
            self.stop_at = Some(self.stop_at.map_or(stop, |earlier| earlier.min(stop)));
        }
    }

    /// Hands an unterminated last line to the watcher.
    fn flush_partial(&mut self, stream: Stream) {
        let line = std::mem::take(&mut self.partial[stream as usize]);
        if !line.is_empty() {
            self.see(&line);
        }
    }
}

/// Most console bytes kept in memory and in the log of one run.
const MAX_CAPTURE: usize = 16 << 20;
/// Appended where the capture was cut.
const TRUNCATED: &str = "\n[xtask: output truncated here]\n";
/// Longer unterminated lines are handed to the watcher in pieces of this size.
const MAX_LINE: usize = 16 << 10;

fn write_flush(out: &mut dyn Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

/// Both pipes closed: QEMU is exiting. Waits for its status, within the deadline.
fn wait_for_exit(child: &mut Child, deadline: Instant, timeout: Duration) -> Result<End> {
    loop {
        if let Some(status) = child.try_wait().context("waiting for QEMU")? {
            return Ok(End::Exited(status.code()));
        }
        if Instant::now() >= deadline {
            kill(child);
            return Ok(End::TimedOut(timeout));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill(child: &mut Child) {
    // SIGTERM first, so that a wrapper (`perf record`, for `bench --profile`) can finish
    // its output and stop QEMU itself; QEMU exits on it at once. SIGKILL if that is not
    // done within the grace period. Already exited is fine; anything else cannot be
    // helped here.
    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if terminated {
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// How long a stopped run may take to exit on SIGTERM before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// `qemu-system-x86_64 --version`, its first line ("unknown" if QEMU cannot say).
pub fn version() -> String {
    Command::new(QEMU)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The command line as one string, for messages (arguments with spaces quoted).
pub fn describe(command: &Command, workspace: &Workspace) -> String {
    let program = command.get_program().to_string_lossy().into_owned();
    let args = command.get_args().map(|arg| {
        let arg = arg.to_string_lossy();
        let arg = arg
            .strip_prefix(&format!("{}/", workspace.root.display()))
            .map_or_else(|| arg.to_string(), str::to_owned);
        if arg.is_empty() || arg.contains(' ') {
            format!("\"{arg}\"")
        } else {
            arg
        }
    });
    std::iter::once(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records lines; asks to stop when it sees `stop`.
    #[derive(Default)]
    struct Recorder {
        lines: Vec<String>,
    }

    impl ConsoleWatcher for Recorder {
        fn line(&mut self, line: &str) -> Verdict {
            self.lines.push(line.to_owned());
            if line == "stop" {
                Verdict::StopWithin(Duration::ZERO)
            } else {
                Verdict::Continue
            }
        }
    }

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    const QUIET: Sinks<'static> = Sinks {
        echo: false,
        log: None,
        input: &[],
    };

    #[test]
    fn captures_output_and_exit_status() {
        let mut recorder = Recorder::default();
        let script = "printf 'one\\r\\ntwo\\n'; echo warn >&2; printf 'tail'; exit 3";
        let capture = run(
            shell(script),
            Duration::from_secs(10),
            &QUIET,
            &mut recorder,
        )
        .unwrap();
        assert_eq!(capture.end, End::Exited(Some(3)));
        assert!(capture.output.contains("one\r\ntwo\n"));
        assert!(capture.output.contains("warn"));
        let mut lines = recorder.lines.clone();
        lines.sort();
        assert_eq!(lines, ["one", "tail", "two", "warn"]);
    }

    #[test]
    fn kills_at_timeout() {
        let mut recorder = Recorder::default();
        let start = Instant::now();
        let script = "echo started; exec sleep 30";
        let capture = run(
            shell(script),
            Duration::from_millis(300),
            &QUIET,
            &mut recorder,
        )
        .unwrap();
        assert_eq!(capture.end, End::TimedOut(Duration::from_millis(300)));
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_eq!(recorder.lines, ["started"]);
    }

    #[test]
    fn a_flood_is_bounded_and_still_times_out() {
        let start = Instant::now();
        let limit = Duration::from_millis(1500);
        let mut recorder = Recorder::default();
        let capture = run(shell("exec cat /dev/zero"), limit, &QUIET, &mut recorder).unwrap();
        assert_eq!(capture.end, End::TimedOut(limit));
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(capture.output.len() <= MAX_CAPTURE + TRUNCATED.len());
        assert!(
            recorder
                .lines
                .iter()
                .all(|line| line.len() <= MAX_LINE + 4096)
        );
    }

    #[test]
    fn watcher_stops_the_run_and_log_is_written() {
        let dir = std::env::temp_dir().join(format!("xtask-qemu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("run.log");
        let sinks = Sinks {
            echo: false,
            log: Some(&log),
            input: &[],
        };
        let mut recorder = Recorder::default();
        let script = "echo hello; echo stop; exec sleep 30";
        let capture = run(
            shell(script),
            Duration::from_secs(20),
            &sinks,
            &mut recorder,
        )
        .unwrap();
        assert_eq!(capture.end, End::Stopped);
        assert!(capture.elapsed < Duration::from_secs(10));
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "hello\nstop\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn xen_module_argument() {
        let command = xen_command(
            Path::new("/x/xen.bin"),
            "console=com1",
            512,
            Path::new("/k/guest"),
            "a=1,b=2",
            Accel::Tcg,
        )
        .unwrap();
        let args: Vec<_> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let initrd = args.iter().position(|a| a == "-initrd").unwrap();
        assert_eq!(args[initrd + 1], "/k/guest a=1,,b=2,/k/guest");
        assert!(args.windows(2).any(|w| w == ["-cpu", "max,-smap"]));
        let spaced = xen_command(Path::new("x"), "", 512, Path::new("/a b"), "", Accel::Tcg);
        assert!(spaced.is_err());
    }

    #[test]
    fn our_hypervisor_arguments() {
        let command = our_hypervisor_command(
            Path::new("/t/hypervisor"),
            "loglvl=info",
            256,
            Path::new("/t/demo.img"),
            Accel::Kvm,
        );
        let args: Vec<_> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let expected = "-accel kvm -cpu max -m 256 -smp 1 -display none -monitor none -serial stdio \
                        -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
                        -kernel /t/hypervisor -append loglvl=info -initrd /t/demo.img";
        assert_eq!(args.join(" "), expected);
    }
}
