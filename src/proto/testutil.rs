//! Test helpers shared by the protocol and scanner unit tests: run a check for every way of splitting an
//! input, so that "chunking must not change the answer" is tested everywhere the same way.

/// Calls `check` with cut lists: no cut, one cut at every position, and a cut between every
/// pair of bytes (byte by byte). Inputs longer than 4 KiB get a sampled set of single cuts.
pub fn for_each_split(len: usize, mut check: impl FnMut(&[usize])) {
    check(&[]);
    let step = if len > 4096 { len / 1024 } else { 1 };
    let mut cut = 1;
    while cut < len {
        check(&[cut]);
        cut += step;
    }
    let every: Vec<usize> = (1..len).collect();
    check(&every);
}

/// The pieces of `data` that the cut list `cuts` (as [`for_each_split`] gives them) makes, in
/// order: what a streaming parser or scanner is fed.
pub fn pieces<'a>(data: &'a [u8], cuts: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let ends = cuts.iter().copied().chain(std::iter::once(data.len()));
    ends.scan(0, move |prev, cut| {
        let piece = &data[*prev..cut];
        *prev = cut;
        Some(piece)
    })
}
