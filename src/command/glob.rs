//! Redis's glob patterns (`stringmatchlen` in Redis's `util.c`), for `CONFIG GET` today and
//! for `KEYS`/`SCAN MATCH` later.
//!
//! - `*` any run of bytes, `?` any one byte;
//! - `[abc]`, `[a-z]` (a reversed range is swapped), `[^...]` negated; inside a class `\x` is
//!   `x`; an unterminated class ends with the pattern;
//! - `\x` the byte `x` itself (a `\` at the very end is a literal `\`);
//! - anything else itself, ignoring ASCII case when `nocase` (Redis's CONFIG GET does).
//!
//! Matching is iterative (backtracking only to the last `*`), so its time is bounded by
//! pattern length times subject length whatever the pattern: no exponential blow-up on
//! `*a*a*a*...b`.

/// True if `subject` matches `pattern`.
pub fn matches(pattern: &[u8], subject: &[u8], nocase: bool) -> bool {
    let (mut p, mut s) = (0, 0);
    // After a `*`: where the pattern resumes, and the next subject position to try it at.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() && pattern[p] == b'*' {
            while p < pattern.len() && pattern[p] == b'*' {
                p += 1;
            }
            if p == pattern.len() {
                return true;
            }
            star = Some((p, s));
            continue;
        }
        if s == subject.len() {
            return p == pattern.len();
        }
        if p < pattern.len() {
            if let Some(next) = one(pattern, p, subject[s], nocase) {
                p = next;
                s += 1;
                continue;
            }
        }
        match star {
            // Let the `*` take one more byte and try again from there.
            Some((resume, from)) if from < subject.len() => {
                star = Some((resume, from + 1));
                p = resume;
                s = from + 1;
            }
            _ => return false,
        }
    }
}

/// Matches the one-byte token at `pattern[p]` (not a `*`) against `c`: where the pattern
/// continues, or `None`.
fn one(pattern: &[u8], p: usize, c: u8, nocase: bool) -> Option<usize> {
    let fold = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
    match pattern[p] {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        b'[' => {
            let mut i = p + 1;
            let negate = pattern.get(i) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut hit = false;
            loop {
                match pattern.get(i) {
                    None => break,
                    Some(b']') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < pattern.len() => {
                        hit |= pattern[i + 1] == c;
                        i += 2;
                    }
                    Some(&start) if i + 2 < pattern.len() && pattern[i + 1] == b'-' => {
                        let (mut lo, mut hi) = (fold(start), fold(pattern[i + 2]));
                        if lo > hi {
                            std::mem::swap(&mut lo, &mut hi);
                        }
                        hit |= (lo..=hi).contains(&fold(c));
                        i += 3;
                    }
                    Some(&b) => {
                        hit |= fold(b) == fold(c);
                        i += 1;
                    }
                }
            }
            (hit != negate).then_some(i)
        }
        b => (fold(b) == fold(c)).then_some(p + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_glob_rows() {
        let rows: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "port", true),
            ("p?rt", "port", true),
            ("p?rt", "prt", false),
            ("*ort", "port", true),
            ("*ort", "portx", false),
            ("po*t", "port", true),
            ("po*t", "pot", true),
            ("[pq]ort", "qort", true),
            ("[^pq]ort", "port", false),
            ("[^pq]ort", "sort", true),
            ("[o-q]ort", "port", true),
            ("[q-o]ort", "port", true),
            ("[a-c]ort", "port", false),
            ("sav\\e", "save", true),
            ("sav\\*", "sav*", true),
            ("sav\\*", "save", false),
            ("[\\]]", "]", true),
            ("[]x", "x", false),
            ("[abc", "b", true),
            ("a\\", "a\\", true),
            ("MAX*", "maxmemory", true),
            (
                "*a*a*a*a*a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
            ("*memory", "maxmemory-memory", true),
            ("", "", true),
            ("", "x", false),
        ];
        for (pattern, subject, expected) in rows {
            assert_eq!(
                matches(pattern.as_bytes(), subject.as_bytes(), true),
                *expected,
                "{pattern:?} ~ {subject:?}"
            );
        }
        assert!(!matches(b"MAX*", b"maxmemory", false));
    }
}
