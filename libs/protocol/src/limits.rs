//! Security floors and caps that auth-svc enforces at start-up and the operator enforces in the
//! AuthStack schema and its own validation: one home for each number.

/// One argon2id minimum: at least `memory_kib` KiB of memory with at least `iterations` passes
/// (one lane).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Minimum {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
}

/// OWASP's argon2id minimum configurations (Password Storage Cheat Sheet), which give equal
/// protection: less memory needs more passes. A cost is acceptable when it meets one of them.
pub const ARGON2_MINIMUMS: [Argon2Minimum; 5] = [
    Argon2Minimum {
        memory_kib: 47_104,
        iterations: 1,
    },
    Argon2Minimum {
        memory_kib: 19_456,
        iterations: 2,
    },
    Argon2Minimum {
        memory_kib: 12_288,
        iterations: 3,
    },
    Argon2Minimum {
        memory_kib: 9_216,
        iterations: 4,
    },
    Argon2Minimum {
        memory_kib: 7_168,
        iterations: 5,
    },
];

/// The least memory any minimum allows (7168 KiB, with 5 passes).
pub const ARGON2_MEMORY_FLOOR_KIB: u32 = {
    let mut floor = u32::MAX;
    let mut i = 0;
    while i < ARGON2_MINIMUMS.len() {
        if ARGON2_MINIMUMS[i].memory_kib < floor {
            floor = ARGON2_MINIMUMS[i].memory_kib;
        }
        i += 1;
    }
    floor
};

/// Whether an argon2id cost meets one of [`ARGON2_MINIMUMS`].
pub fn meets_argon2_minimum(memory_kib: u32, iterations: u32) -> bool {
    ARGON2_MINIMUMS
        .iter()
        .any(|m| memory_kib >= m.memory_kib && iterations >= m.iterations)
}

/// [`ARGON2_MINIMUMS`] in words, for error messages:
/// `"memory ≥ 47104 KiB with iterations ≥ 1, memory ≥ 19456 KiB with iterations ≥ 2, ..."`.
pub fn argon2_minimums_text() -> String {
    ARGON2_MINIMUMS
        .iter()
        .map(|m| {
            format!(
                "memory ≥ {} KiB with iterations ≥ {}",
                m.memory_kib, m.iterations
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Longest refresh-token reuse grace window, in seconds: within it a replaced refresh token is
/// still accepted (concurrent refreshes), so it must stay short.
pub const REFRESH_REUSE_GRACE_MAX_SECS: u64 = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimums_are_combinations() {
        assert!(meets_argon2_minimum(19_456, 2));
        assert!(meets_argon2_minimum(47_104, 1));
        assert!(meets_argon2_minimum(7_168, 5));
        assert!(!meets_argon2_minimum(19_456, 1));
        assert!(!meets_argon2_minimum(7_168, 4));
        assert!(!meets_argon2_minimum(7_167, 100));
        assert_eq!(ARGON2_MEMORY_FLOOR_KIB, 7_168);
        assert!(argon2_minimums_text().starts_with("memory ≥ 47104 KiB with iterations ≥ 1, "));
    }
}
