//! Phone number plausibility, for candidates the `phone-number` pattern
//! found: E.164 country codes with their national-number lengths, and the
//! shapes national numbers take.
//!
//! Why not the `phonenumber` crate (libphonenumber's metadata): its
//! validation goes through one process-wide `Mutex<RegexCache>` of 100
//! lazily compiled `regex` patterns, and checking the ~26 regions a
//! gateway sees needs several hundred of them, so under mixed traffic most
//! checks recompile regexes (milliseconds per candidate) while holding a
//! lock every scanning thread shares; a message full of "+49 …" tokens
//! would turn that into a denial of service. It also cannot say which
//! region a national number without `+` belongs to, which is exactly where
//! context words have to decide anyway. What the rule needs is cheap and
//! bounded: the country-code table and lengths below (taken from
//! libphonenumber's metadata), with context words and negative words in
//! the rule pack doing the rest.

/// Every country calling code with the shortest and longest national
/// significant number of its fixed-line, mobile, VoIP, personal and UAN
/// ranges, merged over the regions that share a code. Generated from
/// libphonenumber's PhoneNumberMetadata.xml (release 9.0.33, as shipped in
/// the `phonenumber` crate; Apache-2.0): the well-kept source's data,
/// without its per-candidate regex machinery. NANP (1) is held to its full
/// ten digits; Mexico (52) also takes the mobile "1" that numbers carried
/// until 2019 and people still write ("+52 1 81 …").
#[rustfmt::skip]
const COUNTRY: &[(u16, u8, u8)] = &[
    (1, 10, 10), (7, 10, 10), (20, 8, 10), (27, 5, 10), (30, 10, 10), (31, 5, 11), (32, 8, 9),
    (33, 9, 9), (34, 9, 9), (36, 8, 9), (39, 6, 12), (40, 6, 9), (41, 9, 9), (43, 4, 13),
    (44, 9, 10), (45, 8, 8), (46, 7, 9), (47, 5, 8), (48, 7, 9), (49, 5, 15), (51, 8, 9),
    (52, 10, 11), (53, 6, 10), (54, 10, 11), (55, 10, 11), (56, 9, 9), (57, 8, 10),
    (58, 10, 10), (60, 8, 10), (61, 9, 9), (62, 7, 12), (63, 6, 10), (64, 5, 10), (65, 8, 11),
    (66, 8, 9), (81, 9, 10), (82, 5, 11), (84, 7, 10), (86, 7, 11), (90, 7, 10), (91, 10, 10),
    (92, 9, 12), (93, 9, 9), (94, 9, 9), (95, 6, 10), (98, 4, 10), (211, 9, 9), (212, 9, 9),
    (213, 8, 9), (216, 8, 8), (218, 9, 9), (220, 7, 7), (221, 9, 9), (222, 8, 8), (223, 8, 8),
    (224, 8, 9), (225, 10, 10), (226, 8, 8), (227, 8, 8), (228, 8, 8), (229, 8, 10),
    (230, 7, 8), (231, 7, 9), (232, 8, 8), (233, 9, 9), (234, 10, 14), (235, 8, 8), (236, 8, 8),
    (237, 9, 9), (238, 7, 7), (239, 7, 7), (240, 9, 9), (241, 7, 8), (242, 9, 9), (243, 7, 10),
    (244, 9, 9), (245, 7, 9), (246, 7, 7), (247, 5, 6), (248, 7, 7), (249, 9, 9), (250, 8, 9),
    (251, 9, 9), (252, 6, 9), (253, 8, 8), (254, 7, 9), (255, 9, 9), (256, 9, 9), (257, 8, 8),
    (258, 8, 9), (260, 9, 9), (261, 9, 9), (262, 9, 9), (263, 5, 10), (264, 8, 9), (265, 7, 9),
    (266, 8, 8), (267, 7, 8), (268, 8, 8), (269, 7, 7), (290, 4, 5), (291, 7, 7), (297, 7, 7),
    (298, 6, 6), (299, 6, 6), (350, 8, 8), (351, 9, 9), (352, 4, 11), (353, 7, 10), (354, 7, 9),
    (355, 8, 9), (356, 8, 8), (357, 8, 8), (358, 5, 12), (359, 6, 9), (370, 8, 8), (371, 8, 8),
    (372, 7, 8), (373, 8, 8), (374, 8, 8), (375, 9, 9), (376, 6, 9), (377, 8, 9), (378, 8, 10),
    (380, 9, 9), (381, 6, 12), (382, 8, 8), (383, 8, 12), (385, 8, 9), (386, 8, 8), (387, 8, 9),
    (389, 8, 8), (420, 9, 9), (421, 6, 9), (423, 7, 9), (500, 5, 5), (501, 7, 7), (502, 8, 8),
    (503, 8, 8), (504, 8, 8), (505, 8, 8), (506, 8, 8), (507, 7, 8), (508, 6, 9), (509, 8, 8),
    (590, 9, 9), (591, 8, 8), (592, 7, 7), (593, 8, 9), (594, 9, 9), (595, 6, 9), (596, 9, 9),
    (597, 6, 7), (598, 4, 8), (599, 7, 8), (670, 7, 8), (672, 6, 6), (673, 7, 7), (674, 7, 7),
    (675, 7, 8), (676, 5, 7), (677, 5, 7), (678, 5, 7), (679, 7, 7), (680, 7, 7), (681, 6, 6),
    (682, 5, 5), (683, 4, 7), (685, 5, 10), (686, 5, 8), (687, 6, 6), (688, 5, 7), (689, 6, 8),
    (690, 4, 7), (691, 7, 7), (692, 7, 7), (850, 8, 10), (852, 8, 8), (853, 8, 8), (855, 8, 9),
    (856, 8, 10), (880, 6, 10), (886, 8, 11), (960, 7, 7), (961, 7, 8), (962, 8, 9),
    (963, 8, 9), (964, 8, 10), (965, 8, 8), (966, 9, 9), (967, 7, 9), (968, 8, 8), (970, 8, 9),
    (971, 8, 9), (972, 8, 12), (973, 8, 8), (974, 8, 8), (975, 7, 8), (976, 8, 10),
    (977, 8, 10), (992, 9, 9), (993, 8, 8), (994, 9, 9), (995, 9, 9), (996, 9, 9), (998, 9, 9),
];

/// Codes whose national numbers keep a leading 0 after the country code
/// (Italy's "+39 06 ..."), from the same metadata.
const LEADING_ZERO: &[u16] = &[39, 47, 225, 229, 241, 242, 378];

/// Digits of `s`, ASCII or full-width, as values.
fn digits_of(s: &str) -> Vec<u8> {
    s.chars()
        .filter_map(|c| match c {
            '0'..='9' => Some(c as u8 - b'0'),
            '\u{FF10}'..='\u{FF19}' => Some((c as u32 - 0xFF10) as u8),
            _ => None,
        })
        .collect()
}

fn nanp(nsn: &[u8]) -> bool {
    nsn.len() == 10 && nsn[0] >= 2 && nsn[3] >= 2 && !(nsn[1] == 1 && nsn[2] == 1)
}

fn international(d: &[u8]) -> bool {
    for cc_len in 1..=3 {
        if d.len() <= cc_len {
            return false;
        }
        let cc = d[..cc_len].iter().fold(0u16, |a, &x| a * 10 + u16::from(x));
        if let Some(&(_, min, max)) = COUNTRY.iter().find(|(c, _, _)| *c == cc) {
            let nsn = &d[cc_len..];
            let len = nsn.len();
            let zero_ok = LEADING_ZERO.contains(&cc);
            return (usize::from(min)..=usize::from(max)).contains(&len)
                && (nsn[0] != 0 || zero_ok)
                && (cc != 1 || nanp(nsn));
        }
    }
    false
}

/// Whether `t` is a calendar date's digits: 2026-12-09, 07.12.2026,
/// 12/07/2026 (one separator throughout) or 20261209. Eight digits that a
/// date explains are not a phone number.
fn is_date(t: &str) -> bool {
    let year = |g: &str| g.len() == 4 && (g.starts_with("19") || g.starts_with("20"));
    let two = |g: &str| g.len() == 2;
    if t.len() == 8 && t.bytes().all(|b| b.is_ascii_digit()) {
        let month = &t[4..6];
        let day = &t[6..];
        return year(&t[..4]) && ("01"..="12").contains(&month) && ("01"..="31").contains(&day);
    }
    for sep in ['-', '.', '/'] {
        let g: Vec<&str> = t.split(sep).collect();
        if g.len() == 3
            && g.iter()
                .all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
        {
            return (year(g[0]) && two(g[1]) && two(g[2]))
                || (two(g[0]) && two(g[1]) && year(g[2]));
        }
    }
    false
}

/// Whether `t` is a dotted IPv4 address.
fn is_ipv4(t: &str) -> bool {
    let g: Vec<&str> = t.split('.').collect();
    g.len() == 4
        && g.iter()
            .all(|x| (1..=3).contains(&x.len()) && x.parse::<u8>().is_ok())
}

/// Whether `matched` (digits with separators, `+`, brackets) is a
/// plausible phone number.
pub(crate) fn phone(matched: &str) -> bool {
    let t = matched.trim_start_matches(|c: char| c == '(' || c.is_whitespace());
    let plus = t.starts_with('+') || t.starts_with('\u{FF0B}');
    // "+49 (0)30 …": the bracketed trunk zero is not dialled from abroad.
    let cleaned;
    let t = if plus && t.contains("(0)") {
        cleaned = t.replacen("(0)", "", 1);
        cleaned.as_str()
    } else {
        t
    };
    let d = digits_of(t);
    if plus {
        return international(&d);
    }
    if d.len() >= 2 && d[0] == 0 && d[1] == 0 {
        return international(&d[2..]);
    }
    let bare = matched.trim();
    if is_date(bare) || is_ipv4(bare) {
        return false;
    }
    // Separators between digits: people group phone numbers, machines do
    // not group timestamps.
    let grouped = bare
        .trim_matches(|c: char| !c.is_ascii_digit())
        .contains(|c: char| !c.is_ascii_digit());
    let national = match d.first() {
        // Trunk prefix 0 (most of Europe, Japan, Korea, Australia, India…):
        // from Stockholm's "08-…" (8 digits) to German numbers with a
        // five-digit area code (13).
        Some(0) => (8..=13).contains(&d.len()),
        // Ten digits starting with 1 are epoch seconds unless grouped
        // ("(14) 4377-9807" in Brazil); eleven are Chinese mobiles and
        // Brazilian "(11) 9xxxx-xxxx"; eight are Nordic numbers.
        Some(1) => matches!(d.len(), 8 | 11) || (d.len() == 10 && grouped),
        // NANP, Spain, Portugal, Poland, Italian mobiles, Mexico, Brazil;
        // Denmark, Norway and Singapore have eight digits and no trunk
        // prefix.
        Some(_) => (8..=11).contains(&d.len()),
        None => false,
    };
    // "(351) 912 345 678": a country code in brackets, without the "+".
    national || (bare.starts_with('(') && d.len() > 11 && international(&d))
}

#[cfg(test)]
mod tests {
    use super::phone;

    #[test]
    fn international_numbers_need_a_known_code_and_length() {
        for ok in [
            "+1 (415) 555-2671",
            "+44 20 7946 0958",
            "+447912345678",
            "+49 (0)40 12345678",
            "+33 6 12 34 56 78",
            "+81 90-1234-5678",
            "+353 1 234 5678",
            "+65 9123 4567",
            "0044 20 7946 0958",
            "+55 (11) 91234-5678",
            "+39 06 1234 5678",
        ] {
            assert!(phone(ok), "{ok}");
        }
        for bad in [
            "+1 115 555 2671",
            "+44 12",
            "+999 123 456 789",
            "+33 06 12 34 56 78",
        ] {
            assert!(!phone(bad), "{bad}");
        }
    }

    #[test]
    fn national_numbers_take_their_usual_lengths() {
        for ok in [
            "(415) 555-2671",
            "030 1234 5678",
            "06 12 34 56 78",
            "612 345 678",
            "090-1234-5678",
            "(11) 91234-5678",
            "０９０－１２３４－５６７８",
            "08-25 19 13",
            "29 19 82 28",
            "426 05 448",
            "41727108",
            "(02862) 80738 363",
            "14 4377-9807",
            "(351) 920 440 358",
        ] {
            assert!(phone(ok), "{ok}");
        }
        for bad in [
            "1733529600",
            "2026-12-09",
            "12/07/2026",
            "10.0.22",
            "4526 0181 5908 3012",
            "20261209",
            "07.12.2026",
            "10.20.30.40",
            "1733529600123",
        ] {
            assert!(!phone(bad), "{bad}");
        }
    }
}
