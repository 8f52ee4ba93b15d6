//! Fuzzes the request parser: arbitrary bytes, fed whole and then in pieces cut where the
//! input's first bytes say, must never panic and must frame the same requests (and end with
//! the same error) either way, with every span inside the buffer; and every request framed,
//! encoded again as a RESP array, must frame back to the same arguments.
//!
//! This is the unstructured half of `tests/parser_fuzz.rs` (its mutated and random
//! generators, same limits, same properties). The structured halves, valid pipelines that
//! must parse to the arguments generated and malformed ones that must end with their defect's
//! error, live only there, where the generator knows the answer.
//!
//! Run from the repository root (new inputs go to the ignored work corpus, seeds stay):
//! `cargo +nightly fuzz run parser fuzz/work-corpus fuzz/corpus/parser -- -max_total_time=60`
#![no_main]

use gokv::protocol::{Limits, Parsed, Parser};
use libfuzzer_sys::fuzz_target;

/// Small limits so that the limit paths are reached by short inputs.
fn limits() -> Limits {
    Limits {
        max_bulk_len: 64,
        max_inline_len: 48,
        max_args: 8,
    }
}

/// Requests framed, then how it ended: `Ok(leftover bytes)` or the error's text.
type Outcome = (Vec<Vec<Vec<u8>>>, Result<usize, String>);

fn feed(input: &[u8], cuts: &[usize]) -> Outcome {
    let mut parser = Parser::new(limits());
    let mut buf: Vec<u8> = Vec::new();
    let mut requests = Vec::new();
    let mut last = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(last, input.len());
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
                            assert!(s.start <= s.end && (s.end as usize) <= consumed);
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

/// `args` as a RESP array of bulk strings.
fn encode_resp(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the cut points; the rest is the input.
    let (a, b, input) = match data {
        [a, b, rest @ ..] => (*a as usize, *b as usize, rest),
        _ => return,
    };
    let whole = feed(input, &[]);
    let split = feed(input, &[a, a + b]);
    assert_eq!(whole, split, "cut at {a} and {}", a + b);
    let step = (a % 7) + 1;
    let cuts: Vec<usize> = (step..input.len()).step_by(step).collect();
    assert_eq!(whole, feed(input, &cuts), "cut every {step} bytes");
    for args in &whole.0 {
        assert_eq!(
            feed(&encode_resp(args), &[]),
            (vec![args.clone()], Ok(0)),
            "round trip of {args:?}"
        );
    }
});
