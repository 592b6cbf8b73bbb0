//! Scenario programs chosen on the command line (`workload=...` and its parameters):
//! what a domain of a multi-domain QEMU scenario does instead of the self-tests.
//!
//! | word | meaning |
//! | --- | --- |
//! | `workload=spin` | spin on the CPU; report the CPU share over the window |
//! | `workload=idle` | sleep in short steps; report the (tiny) CPU share and timer lateness |
//! | `workload=pingpong-server` / `pingpong-client` | event ping-pong with `peer` |
//! | `workload=spin-masked` | spin forever with events masked (never ends by itself) |
//! | `workload=crash-later` | run a while (`crash_delay_ms`), then fault with no handler |
//! | `workload=flood` | exhaust the port table, then flood `peer` with events |
//! | `workload=watch` | connect to `peers`, survive their misbehaviour, see crashes |
//! | `workload=control` | (privileged) wait for a domain to crash, then shut down `shutdown` |
//! | `workload=console` | (privileged) read console input until it has `expect_input` |
//! | `workload=fuzz` | make `rounds` random hypercalls (seeded by `seed`), survive them |
//! | `peer=N`, `peers=N,M` | the other domain(s) |
//! | `rounds=N` | ping-pong round trips (default 10000) |
//! | `expect_share=N` | expected CPU share, per mille (spin: within 10%) |
//! | `max_share=N` | largest acceptable CPU share, per mille (idle) |
//! | `window_ms=A-B` | the measurement window, in system time |
//! | `max_late_us=N` | the latest a timer may fire after its deadline |
//! | `shutdown=N` | the domain `control` shuts down remotely |
//! | `crash_delay_ms=N` | when `crash-later` faults |
//! | `expect_input=TEXT` | what `console` must read (at most 32 bytes) |
//! | `seed=N` | the fuzzer's seed |
//!
//! Two domains find each other's event channel without a store: the one with the lower
//! domain id offers a port (`alloc_unbound` for the peer), the other probes the
//! offerer's ports 1..=[`PROBE_PORTS`] with `bind_interdomain` until one binds (only a
//! port offered to it can).

/// Ports a client probes on its peer.
pub const PROBE_PORTS: u32 = 64;

/// What the domain runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// CPU-bound loop.
    Spin,
    /// Mostly asleep.
    Idle,
    /// Ping-pong, offering side.
    PingServer,
    /// Ping-pong, probing side.
    PingClient,
    /// CPU-bound with events masked, forever.
    SpinMasked,
    /// Crash after a delay.
    CrashLater,
    /// Port exhaustion and an event flood.
    Flood,
    /// Connects to misbehaving peers and checks it is unharmed.
    Watch,
    /// Privileged: watches for a crash and shuts a domain down.
    Control,
    /// Privileged: reads the hypervisor console's input.
    Console,
    /// Random hypercalls.
    Fuzz,
}

/// The parameters of a scenario program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The program, if any (none: run the self-tests).
    pub workload: Option<Workload>,
    /// Peer domain ids (up to two).
    pub peers: [Option<u16>; 2],
    /// Ping-pong round trips.
    pub rounds: u32,
    /// Expected CPU share, per mille.
    pub expect_share: Option<u32>,
    /// Largest acceptable CPU share, per mille.
    pub max_share: Option<u32>,
    /// Measurement window (system time, ms).
    pub window_ms: (u64, u64),
    /// Largest acceptable timer lateness (µs).
    pub max_late_us: u64,
    /// Domain to shut down remotely.
    pub shutdown: Option<u16>,
    /// Delay before `crash-later` faults (ms).
    pub crash_delay_ms: u64,
    /// What `console` must read: bytes and length.
    pub expect_input: ([u8; 32], usize),
    /// The fuzzer's seed.
    pub seed: u64,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            workload: None,
            peers: [None; 2],
            rounds: 10_000,
            expect_share: None,
            max_share: None,
            window_ms: (500, 2500),
            max_late_us: 5_000,
            shutdown: None,
            crash_delay_ms: 300,
            expect_input: ([0; 32], 0),
            seed: 1,
        }
    }
}

impl Scenario {
    /// The first peer.
    pub fn peer(&self) -> Option<u16> {
        self.peers[0]
    }

    /// What `console` must read.
    pub fn expected_input(&self) -> &[u8] {
        &self.expect_input.0[..self.expect_input.1]
    }
}

/// Applies one command-line word; `false` if it is not a scenario word (or malformed).
pub fn apply(scenario: &mut Scenario, word: &str) -> bool {
    let Some((key, value)) = word.split_once('=') else {
        return false;
    };
    let number = || value.parse::<u64>().ok();
    match key {
        "workload" => {
            scenario.workload = Some(match value {
                "spin" => Workload::Spin,
                "idle" => Workload::Idle,
                "pingpong-server" => Workload::PingServer,
                "pingpong-client" => Workload::PingClient,
                "spin-masked" => Workload::SpinMasked,
                "crash-later" => Workload::CrashLater,
                "flood" => Workload::Flood,
                "watch" => Workload::Watch,
                "control" => Workload::Control,
                "console" => Workload::Console,
                "fuzz" => Workload::Fuzz,
                _ => return false,
            });
        }
        "peer" | "peers" => {
            let mut ids = value.split(',').map(|v| v.parse::<u16>().ok());
            let first = ids.next().flatten();
            let second = ids.next().flatten();
            if first.is_none() || ids.next().is_some() {
                return false;
            }
            scenario.peers = [first, second];
        }
        "rounds" => match number() {
            Some(n) if n > 0 && n <= u64::from(u32::MAX) => scenario.rounds = n as u32,
            _ => return false,
        },
        "expect_share" => match number() {
            Some(n) if n <= 1000 => scenario.expect_share = Some(n as u32),
            _ => return false,
        },
        "max_share" => match number() {
            Some(n) if n <= 1000 => scenario.max_share = Some(n as u32),
            _ => return false,
        },
        "window_ms" => {
            let Some((a, b)) = value.split_once('-') else {
                return false;
            };
            match (a.parse::<u64>(), b.parse::<u64>()) {
                (Ok(a), Ok(b)) if a < b => scenario.window_ms = (a, b),
                _ => return false,
            }
        }
        "max_late_us" => match number() {
            Some(n) => scenario.max_late_us = n,
            None => return false,
        },
        "shutdown" => match value.parse::<u16>() {
            Ok(id) => scenario.shutdown = Some(id),
            Err(_) => return false,
        },
        "crash_delay_ms" => match number() {
            Some(n) => scenario.crash_delay_ms = n,
            None => return false,
        },
        "seed" => match number() {
            Some(n) => scenario.seed = n,
            None => return false,
        },
        "expect_input" => {
            let bytes = value.as_bytes();
            if bytes.is_empty() || bytes.len() > 32 {
                return false;
            }
            scenario.expect_input.0[..bytes.len()].copy_from_slice(bytes);
            scenario.expect_input.1 = bytes.len();
        }
        _ => return false,
    }
    true
}

/// Parses every scenario word of `line` (others are left to the kernel's parser).
pub fn parse(line: &str) -> Scenario {
    let mut scenario = Scenario::default();
    for word in line.split_ascii_whitespace() {
        apply(&mut scenario, word);
    }
    scenario
}

/// Whether `word` is a well-formed scenario word.
pub fn knows(word: &str) -> bool {
    apply(&mut Scenario::default(), word)
}

/// Whether a measured share (per mille, as a fraction `got_num / got_den`) is within
/// 10% of `expected` per mille.
pub fn share_within_tenth(got_num: u64, got_den: u64, expected: u32) -> bool {
    // |got/den - e/1000| <= e/10000  <=>  |got*10000 - e*10*den| <= e*den
    let got = u128::from(got_num) * 10_000;
    let want = u128::from(expected) * 10 * u128::from(got_den);
    got.abs_diff(want) <= u128::from(expected) * u128::from(got_den)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_defaults() {
        let s = parse("workload=pingpong-client peer=1 rounds=500 window_ms=100-900 other");
        assert_eq!(s.workload, Some(Workload::PingClient));
        assert_eq!(s.peer(), Some(1));
        assert_eq!(s.rounds, 500);
        assert_eq!(s.window_ms, (100, 900));
        assert_eq!(parse("").rounds, 10_000);
        let s = parse("workload=watch peers=2,4 max_late_us=7000 shutdown=3 crash_delay_ms=5");
        assert_eq!(s.peers, [Some(2), Some(4)]);
        assert_eq!(
            (s.max_late_us, s.shutdown, s.crash_delay_ms),
            (7000, Some(3), 5)
        );
        assert!(knows("expect_share=125"));
        assert!(!knows("expect_share=1001"));
        assert!(!knows("workload=dance"));
        assert!(!knows("window_ms=9-3"));
        assert!(!knows("peers=1,2,3"));
        assert!(!knows("crash=ud2"), "the kernel's own words are not ours");
        let s = parse("workload=console expect_input=hello");
        assert_eq!(s.workload, Some(Workload::Console));
        assert_eq!(s.expected_input(), b"hello");
        assert!(!knows("expect_input="));
    }

    #[test]
    fn shares() {
        assert!(share_within_tenth(125, 1000, 125));
        assert!(share_within_tenth(1375, 10000, 125), "exactly +10%");
        assert!(!share_within_tenth(1380, 10000, 125));
        assert!(share_within_tenth(45, 100, 500));
        assert!(!share_within_tenth(44, 100, 500));
    }
}
