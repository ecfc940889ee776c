//! A port of Redis' glob matcher (`stringmatchlen`), checked against known cases, to test
//! escaped patterns without a server.

fn at(b: &[u8], i: isize) -> u8 {
    usize::try_from(i)
        .ok()
        .and_then(|i| b.get(i).copied())
        .unwrap_or(0)
}

/// Redis' `stringmatchlen` (util.c), ported literally: what SCAN/HSCAN MATCH does.
pub(crate) fn redis_glob(pattern: &str, text: &str) -> bool {
    let mut skip = false;
    let (p, s) = (pattern.as_bytes(), text.as_bytes());
    glob_impl(p, 0, p.len() as isize, s, 0, s.len() as isize, &mut skip, 0)
}

#[allow(clippy::too_many_arguments)]
fn glob_impl(
    p: &[u8],
    mut pi: isize,
    mut pl: isize,
    s: &[u8],
    mut si: isize,
    mut sl: isize,
    skip: &mut bool,
    nesting: u32,
) -> bool {
    if nesting > 1000 {
        return false;
    }
    while pl > 0 && sl > 0 {
        match at(p, pi) {
            b'*' => {
                while pl > 0 && at(p, pi + 1) == b'*' {
                    pi += 1;
                    pl -= 1;
                }
                if pl == 1 {
                    return true;
                }
                while sl > 0 {
                    if glob_impl(p, pi + 1, pl - 1, s, si, sl, skip, nesting + 1) {
                        return true;
                    }
                    if *skip {
                        return false;
                    }
                    si += 1;
                    sl -= 1;
                }
                *skip = true;
                return false;
            }
            b'?' => {
                si += 1;
                sl -= 1;
            }
            b'[' => {
                pi += 1;
                pl -= 1;
                let not = at(p, pi) == b'^';
                if not {
                    pi += 1;
                    pl -= 1;
                }
                let mut matched = false;
                loop {
                    if at(p, pi) == b'\\' && pl >= 2 {
                        pi += 1;
                        pl -= 1;
                        if at(p, pi) == at(s, si) {
                            matched = true;
                        }
                    } else if at(p, pi) == b']' {
                        break;
                    } else if pl == 0 {
                        pi -= 1;
                        pl += 1;
                        break;
                    } else if pl >= 3 && at(p, pi + 1) == b'-' {
                        let mut start = at(p, pi) as i8 as i32;
                        let mut end = at(p, pi + 2) as i8 as i32;
                        let c = at(s, si) as i8 as i32;
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        pi += 2;
                        pl -= 2;
                        if c >= start && c <= end {
                            matched = true;
                        }
                    } else if at(p, pi) == at(s, si) {
                        matched = true;
                    }
                    pi += 1;
                    pl -= 1;
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                si += 1;
                sl -= 1;
            }
            c => {
                let mut c = c;
                if c == b'\\' && pl >= 2 {
                    pi += 1;
                    pl -= 1;
                    c = at(p, pi);
                }
                if c != at(s, si) {
                    return false;
                }
                si += 1;
                sl -= 1;
            }
        }
        pi += 1;
        pl -= 1;
        if sl == 0 {
            while at(p, pi) == b'*' {
                pi += 1;
                pl -= 1;
            }
            break;
        }
    }
    pl == 0 && sl == 0
}

#[test]
fn the_glob_port_agrees_with_redis_on_known_cases() {
    for (p, s, want) in [
        ("a*", "abc", true),
        ("a\\*", "a*", true),
        ("a\\*", "ab", false),
        ("h?llo", "hello", true),
        ("h[ae]llo", "hallo", true),
        ("h[^e]llo", "hello", false),
        ("h[a-b]llo", "hbllo", true),
        ("Item:*:acme", "Item:x:y:acme", true),
        ("Item:*:acme", "Item:x:acme2", false),
        ("\\[ab\\]", "[ab]", true),
        ("\\[ab\\]", "a", false),
        ("*", "", false), // Redis: `*` needs at least one byte
        ("", "", true),
    ] {
        assert_eq!(redis_glob(p, s), want, "{p:?} on {s:?}");
    }
}
