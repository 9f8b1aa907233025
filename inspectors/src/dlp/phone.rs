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
//! bounded: the country-code table and lengths below (from the ITU-T E.164
//! assignments and national numbering plans), with context words and
//! negative words in the rule pack doing the rest.

/// National significant number lengths (min, max) per country calling
/// code, for the countries the packs cover and the larger others.
const COUNTRY: &[(u16, u8, u8)] = &[
    (1, 10, 10),   // NANP
    (7, 10, 10),   // Russia, Kazakhstan
    (20, 9, 10),   // Egypt
    (27, 9, 9),    // South Africa
    (30, 10, 10),  // Greece
    (31, 9, 9),    // Netherlands
    (32, 8, 9),    // Belgium
    (33, 9, 9),    // France
    (34, 9, 9),    // Spain
    (36, 8, 9),    // Hungary
    (39, 6, 11),   // Italy
    (40, 9, 9),    // Romania
    (41, 9, 9),    // Switzerland
    (43, 4, 13),   // Austria
    (44, 9, 10),   // United Kingdom
    (45, 8, 8),    // Denmark
    (46, 7, 10),   // Sweden
    (47, 8, 8),    // Norway
    (48, 9, 9),    // Poland
    (49, 5, 13),   // Germany
    (51, 8, 9),    // Peru
    (52, 10, 11),  // Mexico (old mobile "1" prefix: 11)
    (54, 10, 11),  // Argentina
    (55, 10, 11),  // Brazil
    (56, 9, 9),    // Chile
    (57, 10, 10),  // Colombia
    (60, 8, 10),   // Malaysia
    (61, 9, 9),    // Australia
    (62, 8, 12),   // Indonesia
    (63, 9, 10),   // Philippines
    (64, 8, 10),   // New Zealand
    (65, 8, 8),    // Singapore
    (66, 8, 9),    // Thailand
    (81, 9, 10),   // Japan
    (82, 8, 10),   // South Korea
    (84, 9, 10),   // Vietnam
    (86, 10, 11),  // China
    (90, 10, 10),  // Turkey
    (91, 10, 10),  // India
    (92, 9, 10),   // Pakistan
    (234, 8, 10),  // Nigeria
    (351, 9, 9),   // Portugal
    (352, 6, 11),  // Luxembourg
    (353, 7, 9),   // Ireland
    (358, 6, 12),  // Finland
    (380, 9, 9),   // Ukraine
    (420, 9, 9),   // Czechia
    (852, 8, 8),   // Hong Kong
    (886, 8, 9),   // Taiwan
    (966, 9, 9),   // Saudi Arabia
    (971, 8, 9),   // United Arab Emirates
    (972, 8, 9),   // Israel
];

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
        let cc = d[..cc_len]
            .iter()
            .fold(0u16, |a, &x| a * 10 + u16::from(x));
        if let Some(&(_, min, max)) = COUNTRY.iter().find(|(c, _, _)| *c == cc) {
            let nsn = &d[cc_len..];
            let len = nsn.len();
            // Italy (and San Marino, Vatican) keep the leading 0 of
            // landlines after the country code: "+39 06 …".
            let zero_ok = matches!(cc, 39 | 378 | 379);
            return (usize::from(min)..=usize::from(max)).contains(&len)
                && (nsn[0] != 0 || zero_ok)
                && (cc != 1 || nanp(nsn));
        }
    }
    false
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
    match d.first() {
        // Trunk prefix 0 (most of Europe, Japan, Korea, Australia, India…).
        Some(0) => (9..=12).contains(&d.len()),
        // Ten digits starting with 1 are epoch seconds, not phone numbers;
        // eleven are Chinese mobiles and Brazilian "(11) 9xxxx-xxxx".
        Some(1) => d.len() == 11,
        // NANP, Spain, Portugal, Poland, Italian mobiles, Mexico, Brazil.
        Some(_) => (9..=11).contains(&d.len()),
        None => false,
    }
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
        for bad in ["+1 115 555 2671", "+44 12", "+999 123 456 789", "+33 06 12 34 56 78"] {
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
        ] {
            assert!(phone(ok), "{ok}");
        }
        for bad in ["1733529600", "2026-12-09", "12/07/2026", "10.0.22", "4526 0181 5908 3012"] {
            assert!(!phone(bad), "{bad}");
        }
    }
}
