//! Which rows shard `I` of `N` scores: a pure function of the input's object
//! sizes, so every pod of a Job computes the same split without talking to
//! the others.
//!
//! The objects, sorted by name, are laid end to end; their total size `T` is
//! cut into `N` contiguous byte ranges, range `i` being
//! `[floor(i*T/N), floor((i+1)*T/N))`. A shard owns the rows (CSV records,
//! JSON lines, Parquet row groups) whose **first byte** lies in its range.
//! The ranges partition `[0, T)`, so every row has exactly one owner; what a
//! row's first byte is comes from the format's own reader (see `csv.rs`,
//! `jsonl.rs`, `parquet.rs`), which reads each file from its start so that it
//! sees the same rows whichever shard runs it.

/// `I/N` as given to `--shard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole input as one shard.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` with `0 <= I < N`.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {text:?}: expected I/N with 0 <= I < N, e.g. 3/16");
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The part of one object a shard owns: rows whose first byte is in
/// `start..end` (offsets within the object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    /// Index of the object in the sorted list.
    pub object: usize,
    pub start: u64,
    pub end: u64,
}

/// Where range `i` of `n` over `total` bytes starts.
fn cut(total: u64, i: u32, n: u32) -> u64 {
    (u128::from(total) * u128::from(i) / u128::from(n)) as u64
}

/// The slices of the objects (of these sizes, in name order) that `shard` owns.
pub fn plan(sizes: &[u64], shard: Shard) -> Vec<Slice> {
    let total: u64 = sizes.iter().sum();
    let (from, to) = (
        cut(total, shard.index, shard.count),
        cut(total, shard.index + 1, shard.count),
    );
    let mut slices = Vec::new();
    let mut offset = 0u64;
    for (object, &size) in sizes.iter().enumerate() {
        let (lo, hi) = (offset.max(from), (offset + size).min(to));
        if lo < hi {
            slices.push(Slice {
                object,
                start: lo - offset,
                end: hi - offset,
            });
        }
        offset += size;
    }
    slices
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small deterministic generator for the randomized tests (xorshift64*).
    pub(crate) struct Rng(pub u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    #[test]
    fn shards_parse_as_index_over_count() {
        assert_eq!(
            Shard::parse("3/16").unwrap(),
            Shard {
                index: 3,
                count: 16
            }
        );
        assert_eq!(Shard::parse("0/1").unwrap(), Shard::WHOLE);
        for bad in ["", "3", "16/16", "1/0", "-1/4", "a/b", "1/2/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_byte_of_every_object_belongs_to_exactly_one_shard() {
        let mut rng = Rng(0x5eed);
        for _ in 0..500 {
            let files = rng.below(6) as usize;
            let sizes: Vec<u64> = (0..files)
                .map(|_| match rng.below(4) {
                    0 => 0,
                    1 => rng.below(3),
                    _ => rng.below(10_000),
                })
                .collect();
            let count = 1 + rng.below(40) as u32;
            let mut owner: Vec<Vec<u32>> =
                sizes.iter().map(|&s| vec![u32::MAX; s as usize]).collect();
            let mut last_end = (0usize, 0u64);
            for index in 0..count {
                for slice in plan(&sizes, Shard { index, count }) {
                    assert!(slice.start < slice.end && slice.end <= sizes[slice.object]);
                    // Slices come in input order: shard i's follow shard i-1's.
                    assert!(
                        (slice.object, slice.start) >= last_end,
                        "{sizes:?} {index}/{count}"
                    );
                    last_end = (slice.object, slice.end);
                    for b in slice.start..slice.end {
                        let cell = &mut owner[slice.object][b as usize];
                        assert_eq!(*cell, u32::MAX, "byte owned twice: {sizes:?} {count}");
                        *cell = index;
                    }
                }
            }
            assert!(
                owner.iter().flatten().all(|&o| o != u32::MAX),
                "{sizes:?} {count}"
            );
        }
    }

    #[test]
    fn ranges_are_even_and_huge_inputs_do_not_overflow() {
        let sizes = [10, 10, 10, 10];
        let spans: Vec<Vec<Slice>> = (0..4)
            .map(|i| plan(&sizes, Shard { index: i, count: 4 }))
            .collect();
        assert_eq!(
            spans[1],
            vec![Slice {
                object: 1,
                start: 0,
                end: 10
            }]
        );
        let big = [u64::MAX / 2, u64::MAX / 2];
        let s = plan(&big, Shard { index: 1, count: 2 });
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].object, 1);
    }
}
