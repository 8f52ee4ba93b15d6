//! Bounded fuzzing of the request parser on stable (the cargo-fuzz target in `fuzz/` runs the
//! same check unbounded on nightly): random bytes and mutated valid pipelines, fed whole and
//! cut at random points, must never panic, keep every span inside the buffer, and frame the
//! same requests and end the same way however the bytes arrive.

use gokv::protocol::{Limits, Parsed, Parser};
use proptest::prelude::*;

/// Small limits so that short inputs reach the limit paths too.
fn limits() -> Limits {
    Limits {
        max_bulk_len: 64,
        max_inline_len: 48,
        max_args: 8,
    }
}

/// Requests framed, then how it ended: leftover bytes, or the error's text.
type Outcome = (Vec<Vec<Vec<u8>>>, Result<usize, String>);

fn feed(input: &[u8], cuts: &[usize]) -> Outcome {
    let mut parser = Parser::new(limits());
    let mut buf: Vec<u8> = Vec::new();
    let mut requests = Vec::new();
    let mut last = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.sort_unstable();
    for cut in cuts.into_iter().chain(std::iter::once(input.len())) {
        buf.extend_from_slice(&input[last..cut]);
        last = cut;
        loop {
            match parser.parse(&mut buf) {
                Ok(Parsed::Request { consumed }) => {
                    assert!(consumed > 0 && consumed <= buf.len());
                    let args = parser
                        .args()
                        .iter()
                        .map(|s| {
                            assert!(s.start <= s.end && s.end as usize <= consumed);
                            buf[s.range()].to_vec()
                        })
                        .collect();
                    requests.push(args);
                    buf.drain(..consumed);
                }
                Ok(Parsed::Skip { consumed }) => {
                    assert!(consumed > 0 && consumed <= buf.len());
                    buf.drain(..consumed);
                }
                Ok(Parsed::Incomplete) => break,
                Err(e) => return (requests, Err(e.to_string())),
            }
        }
    }
    (requests, Ok(buf.len()))
}

/// Valid requests (RESP and inline) to mutate.
fn valid_pipeline() -> impl Strategy<Value = Vec<u8>> {
    let arg = prop::collection::vec(any::<u8>(), 0..12);
    let resp = prop::collection::vec(arg, 1..5).prop_map(|args| {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(&a);
            out.extend_from_slice(b"\r\n");
        }
        out
    });
    let inline = "[A-Za-z0-9 \"'\\\\]{0,30}".prop_map(|s| format!("{s}\r\n").into_bytes());
    prop::collection::vec(prop_oneof![resp, inline], 1..6).prop_map(|v| v.concat())
}

/// A valid pipeline with a few bytes overwritten, inserted or removed.
fn mutated_pipeline() -> impl Strategy<Value = Vec<u8>> {
    (
        valid_pipeline(),
        prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..4),
    )
        .prop_map(|(mut bytes, edits)| {
            for (at, byte, kind) in edits {
                let at = at % (bytes.len() + 1);
                match kind {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => {}
                }
            }
            bytes
        })
}

fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
    // Bytes the parser cares about, so that random input is not all "inline garbage".
    let byte = prop_oneof![
        Just(b'*'),
        Just(b'$'),
        Just(b'\r'),
        Just(b'\n'),
        Just(b'-'),
        Just(b' '),
        Just(b'"'),
        Just(0u8),
        b'0'..=b'9',
        any::<u8>(),
    ];
    prop::collection::vec(byte, 0..200)
}

proptest! {
    // Bounded for CI on stable: a few thousand cases, well under a second each.
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_pipelines_parse_the_same_however_they_arrive(
        input in mutated_pipeline(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let whole = feed(&input, &[]);
        prop_assert_eq!(&whole, &feed(&input, &cuts));
        let every: Vec<usize> = (1..input.len()).collect();
        prop_assert_eq!(&whole, &feed(&input, &every));
    }

    #[test]
    fn random_bytes_never_panic_and_parse_the_same_split(
        input in interesting_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let whole = feed(&input, &[]);
        prop_assert_eq!(&whole, &feed(&input, &cuts));
    }

    #[test]
    fn valid_pipelines_are_fully_framed(input in valid_pipeline()) {
        let (_, end) = feed(&input, &[]);
        // Either every byte was framed, or a limit of the small test limits was hit.
        match end {
            Ok(leftover) => prop_assert_eq!(leftover, 0),
            Err(e) => prop_assert!(
                e.contains("more than") || e.contains("unbalanced") || e.contains("NUL"),
                "{}", e
            ),
        }
    }
}
