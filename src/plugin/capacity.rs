//! Sizes the plugin host to what the kernel allows. Every pooled instance
//! slot costs memory mappings (its linear memory is a read-write window in a
//! reserved region), file descriptors (its socket) and memory, so the number
//! of slots is planned at startup from `vm.max_map_count`, `RLIMIT_NOFILE`,
//! `RLIMIT_AS` and `MemAvailable`. A configuration that cannot fit is refused
//! before the gateway serves anything, naming the limit and what to change;
//! one that fits is served up to the planned number of plugin connections,
//! and past it connections are refused cleanly instead of failing at
//! instantiation (or aborting the process) under load.

use std::fmt;

/// Memory mappings each live plugin connection adds: its memory slot's
/// accessible window splits the slot's reserved region in three (before,
/// window, after). Measured from outside by `tests/suite/capacity.rs`.
pub const MAPS_PER_CONNECTION: u64 = 2;

/// Mappings kept free for everything else the process maps while it runs:
/// thread stacks (tokio's blocking pool has up to 512 threads, two mappings
/// each), malloc arenas, the compiled plugins and the disk queues.
pub const MAP_HEADROOM: u64 = 4096;

/// Resident bytes one idle plugin connection is planned at (measured about
/// 53 KB for the example plugins; see plugins/README.md), for the memory check.
pub const IDLE_BYTES_PER_CONNECTION: u64 = 64 << 10;

/// The process limits the plan is made against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLimits {
    /// `/proc/sys/vm/max_map_count` (`None`: unknown, not checked).
    pub max_map_count: Option<u64>,
    /// Mappings the process holds now, engine created (`/proc/self/maps`).
    pub maps_now: u64,
    /// `RLIMIT_NOFILE`, soft (after raising it to the hard limit).
    pub nofile: u64,
    /// `RLIMIT_AS` (`None`: unlimited).
    pub address_space: Option<u64>,
    /// `MemAvailable` from `/proc/meminfo` (`None`: unknown, not checked).
    pub mem_available: Option<u64>,
}

impl HostLimits {
    /// Reads the limits of this process. Raises the soft `RLIMIT_NOFILE` to
    /// the hard limit first, as the Go runtime does for nsqd.
    pub fn read() -> HostLimits {
        HostLimits {
            max_map_count: read_u64("/proc/sys/vm/max_map_count"),
            maps_now: count_maps().unwrap_or(0),
            nofile: raise_nofile(),
            address_space: address_space_limit(),
            mem_available: mem_available(),
        }
    }
}

/// The plan: how many plugin connections the host serves at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    /// Plugin connections served at once, all plugins together; also the
    /// number of pooled instance slots.
    pub slots: u32,
    /// What the plugins' `limits.max_connections` add up to.
    pub configured: u64,
    /// Descriptors kept for V2, HTTP and the disk queues when every plugin
    /// slot is taken.
    pub fd_reserve: u64,
    /// Mappings the plan uses at most, and the kernel's limit.
    pub maps_planned: u64,
    pub max_map_count: Option<u64>,
    /// Which limit made `slots` smaller than `configured`, if any.
    pub bound_by: Option<&'static str>,
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} plugin connections at once ({} configured), {} memory mappings each, \
             {} mappings planned of vm.max_map_count {}, {} file descriptors kept for V2 and HTTP",
            self.slots,
            self.configured,
            MAPS_PER_CONNECTION,
            self.maps_planned,
            self.max_map_count
                .map_or_else(|| "unknown".to_owned(), |m| m.to_string()),
            self.fd_reserve,
        )?;
        if let Some(b) = self.bound_by {
            write!(f, "; bounded by {b}")?;
        }
        Ok(())
    }
}

/// Why the plugins cannot be served as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    #[error(
        "the plugins need {needed} memory mappings for {connections} connections \
         ({MAPS_PER_CONNECTION} each, plus {held} held now and {MAP_HEADROOM} kept free), \
         but vm.max_map_count is {limit}: lower the plugins' limits.max_connections \
         (together at most {fits}) or raise the limit, for example \
         `sysctl -w vm.max_map_count={suggest}`"
    )]
    Mappings {
        needed: u64,
        connections: u64,
        held: u64,
        limit: u64,
        fits: u64,
        suggest: u64,
    },
    #[error(
        "RLIMIT_NOFILE is {nofile}, too low to serve any plugin connection while keeping \
         {reserve} descriptors for V2 and HTTP: raise it (`ulimit -n`, or LimitNOFILE= in a \
         systemd unit)"
    )]
    Descriptors { nofile: u64, reserve: u64 },
    #[error(
        "the plugins reserve {needed} bytes of address space for {connections} connections \
         ({per_slot} each), but RLIMIT_AS is {limit}: lower limits.max_connections or \
         limits.memory, or raise RLIMIT_AS (`ulimit -v`)"
    )]
    AddressSpace {
        needed: u64,
        connections: u64,
        per_slot: u64,
        limit: u64,
    },
    #[error(
        "{connections} idle plugin connections need about {needed} bytes of memory \
         ({IDLE_BYTES_PER_CONNECTION} each) but only {available} are available: lower the \
         plugins' limits.max_connections"
    )]
    Memory {
        needed: u64,
        connections: u64,
        available: u64,
    },
}

/// Descriptors kept for everything but plugin connections: a quarter of the
/// limit, at least 256.
pub fn fd_reserve(nofile: u64) -> u64 {
    (nofile / 4).max(256)
}

/// Plans the slots for plugins whose `limits.max_connections` add up to
/// `configured`, each slot reserving `slot_bytes` of address space.
///
/// Descriptors bound the plan quietly: no more plugin connections can be
/// open than the process has descriptors to spare, so slots beyond that
/// would never be used. Mappings, address space and memory must hold the
/// plan, or it is refused.
pub fn plan(
    configured: u64,
    slot_bytes: u64,
    limits: &HostLimits,
) -> Result<Capacity, CapacityError> {
    let reserve = fd_reserve(limits.nofile);
    let by_fds = limits.nofile.saturating_sub(reserve);
    if by_fds == 0 {
        return Err(CapacityError::Descriptors {
            nofile: limits.nofile,
            reserve,
        });
    }
    let (slots, bound_by) = if configured > by_fds {
        (by_fds, Some("RLIMIT_NOFILE"))
    } else {
        (configured, None)
    };
    let slots = slots.min(u64::from(u32::MAX));
    let maps_planned = limits.maps_now + MAP_HEADROOM + slots * MAPS_PER_CONNECTION;
    if let Some(limit) = limits.max_map_count
        && maps_planned > limit
    {
        let fits = limit.saturating_sub(limits.maps_now + MAP_HEADROOM) / MAPS_PER_CONNECTION;
        return Err(CapacityError::Mappings {
            needed: maps_planned,
            connections: slots,
            held: limits.maps_now,
            limit,
            fits,
            suggest: maps_planned.next_multiple_of(65536),
        });
    }
    if let Some(limit) = limits.address_space {
        let needed = slots.saturating_mul(slot_bytes);
        if needed > limit {
            return Err(CapacityError::AddressSpace {
                needed,
                connections: slots,
                per_slot: slot_bytes,
                limit,
            });
        }
    }
    if let Some(available) = limits.mem_available {
        let needed = slots.saturating_mul(IDLE_BYTES_PER_CONNECTION);
        if needed > available {
            return Err(CapacityError::Memory {
                needed,
                connections: slots,
                available,
            });
        }
    }
    Ok(Capacity {
        slots: u32::try_from(slots).unwrap_or(u32::MAX),
        configured,
        fd_reserve: reserve,
        maps_planned,
        max_map_count: limits.max_map_count,
        bound_by,
    })
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Lines of `/proc/self/maps`: one per mapping.
pub fn count_maps() -> Option<u64> {
    let maps = std::fs::read("/proc/self/maps").ok()?;
    Some(maps.iter().filter(|&&b| b == b'\n').count() as u64)
}

/// Raises the soft descriptor limit to the hard one; returns the soft limit
/// in force afterwards.
fn raise_nofile() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let before = lim.current;
        lim.current = lim.maximum;
        if setrlimit(Resource::Nofile, lim).is_err() {
            lim.current = before;
        }
    }
    lim.current.unwrap_or(u64::MAX)
}

fn address_space_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::As).current
}

fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux_default() -> HostLimits {
        HostLimits {
            max_map_count: Some(65530),
            maps_now: 400,
            nofile: 20000,
            address_space: None,
            mem_available: Some(16 << 30),
        }
    }

    #[test]
    fn descriptors_bound_the_slots_quietly() {
        let c = plan(30_000, 18 << 20, &linux_default()).expect("fits");
        assert_eq!(c.fd_reserve, 5000);
        assert_eq!(c.slots, 15_000);
        assert_eq!(c.bound_by, Some("RLIMIT_NOFILE"));
        assert_eq!(
            c.maps_planned,
            400 + MAP_HEADROOM + 15_000 * MAPS_PER_CONNECTION
        );
    }

    #[test]
    fn a_plan_within_every_limit_is_the_configuration() {
        let c = plan(6000, 18 << 20, &linux_default()).expect("fits");
        assert_eq!((c.slots, c.bound_by), (6000, None));
        assert!(c.to_string().contains("6000 plugin connections"));
    }

    #[test]
    fn the_default_plugins_fit_the_default_map_limit_with_any_descriptor_limit() {
        let limits = HostLimits {
            nofile: 1 << 20,
            ..linux_default()
        };
        let c = plan(30_000, 18 << 20, &limits).expect("fits");
        assert_eq!((c.slots, c.bound_by), (30_000, None));
        assert!(c.maps_planned <= 65530, "{c}");
    }

    #[test]
    fn too_many_mappings_are_refused_with_the_fix() {
        let limits = HostLimits {
            nofile: 1 << 20,
            ..linux_default()
        };
        let err = plan(60_000, 18 << 20, &limits).expect_err("does not fit");
        let CapacityError::Mappings { fits, limit, .. } = err.clone() else {
            panic!("wrong error: {err}");
        };
        assert_eq!(limit, 65530);
        assert_eq!(fits, (65530 - 400 - MAP_HEADROOM) / MAPS_PER_CONNECTION);
        let msg = err.to_string();
        assert!(msg.contains("vm.max_map_count"), "{msg}");
        assert!(msg.contains("sysctl -w vm.max_map_count=131072"), "{msg}");
    }

    #[test]
    fn address_space_and_memory_are_checked() {
        let limits = HostLimits {
            address_space: Some(1 << 30),
            ..linux_default()
        };
        let err = plan(1000, 18 << 20, &limits).expect_err("too much address space");
        assert!(matches!(err, CapacityError::AddressSpace { .. }), "{err}");
        let limits = HostLimits {
            mem_available: Some(10 << 20),
            ..linux_default()
        };
        let err = plan(1000, 18 << 20, &limits).expect_err("too little memory");
        assert!(matches!(err, CapacityError::Memory { .. }), "{err}");
    }

    #[test]
    fn a_tiny_descriptor_limit_is_refused() {
        let limits = HostLimits {
            nofile: 200,
            ..linux_default()
        };
        assert!(matches!(
            plan(10, 1 << 20, &limits),
            Err(CapacityError::Descriptors { .. })
        ));
    }

    #[test]
    fn this_process_limits_are_readable() {
        let l = HostLimits::read();
        assert!(l.maps_now > 0);
        assert!(l.nofile > 0);
    }
}
