//! Structure and checksum checks that turn "looks like" into "is".

use super::format::ValidatorSpec;

impl ValidatorSpec {
    /// A short name for score contributions and explanations.
    pub fn name(&self) -> &'static str {
        match self {
            ValidatorSpec::Luhn => "luhn",
            ValidatorSpec::Card => "card",
            ValidatorSpec::Iban => "iban",
            ValidatorSpec::UsSsn => "us_ssn",
            ValidatorSpec::AbaRouting => "aba_routing",
            ValidatorSpec::Phone => "phone",
            ValidatorSpec::Entropy { .. } => "entropy",
        }
    }

    /// Whether `matched` (the matched text, separators included) passes.
    pub fn check(&self, matched: &str) -> bool {
        match self {
            ValidatorSpec::Luhn => luhn(&digits(matched)),
            ValidatorSpec::Card => card(&digits(matched)),
            ValidatorSpec::Iban => iban(matched),
            ValidatorSpec::UsSsn => us_ssn(&digits(matched)),
            ValidatorSpec::AbaRouting => aba_routing(&digits(matched)),
            ValidatorSpec::Phone => super::phone::phone(matched),
            ValidatorSpec::Entropy { min } => shannon_entropy(matched) >= *min,
        }
    }
}

/// The ASCII digits of `s` as values 0..=9, separators dropped.
fn digits(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

/// The Luhn (mod 10) checksum used by card numbers and many ids.
pub fn luhn(d: &[u8]) -> bool {
    if d.len() < 2 {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 {
                    y - 9
                } else {
                    y
                }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn prefix_num(d: &[u8], n: usize) -> u32 {
    d.iter().take(n).fold(0, |acc, &x| acc * 10 + u32::from(x))
}

/// Luhn plus a card network's IIN range and length: a 16-digit Luhn-valid
/// order number starting with 9 is not a card.
pub fn card(d: &[u8]) -> bool {
    if !(12..=19).contains(&d.len()) || !luhn(d) {
        return false;
    }
    let len = d.len();
    let p1 = prefix_num(d, 1);
    let p2 = prefix_num(d, 2);
    let p3 = prefix_num(d, 3);
    let p4 = prefix_num(d, 4);
    let p6 = prefix_num(d, 6);
    // Visa
    (p1 == 4 && matches!(len, 13 | 16 | 19))
        // Mastercard, including the 2-series
        || ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16
        // American Express
        || (p2 == 34 || p2 == 37) && len == 15
        // Discover
        || (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622126..=622925).contains(&p6))
            && (16..=19).contains(&len)
        // JCB, and its legacy 15-digit ranges
        || (3528..=3589).contains(&p4) && (16..=19).contains(&len)
        || (p4 == 1800 || p4 == 2131) && len == 15
        // Diners Club
        || ((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39) && (14..=19).contains(&len)
        // UnionPay
        || p2 == 62 && (16..=19).contains(&len)
        // Maestro
        || matches!(p4, 5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761 | 6762 | 6763)
            && (12..=19).contains(&len)
}

/// IBAN length per country (ISO 13616 registry, SWIFT release 2024).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("YE", 30),
];

/// IBAN: known country code, that country's length, and mod-97 == 1.
pub fn iban(s: &str) -> bool {
    let compact: Vec<u8> = s
        .bytes()
        .filter(u8::is_ascii_alphanumeric)
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if compact.len() < 5 || !compact[..2].iter().all(u8::is_ascii_uppercase) {
        return false;
    }
    let Ok(country) = std::str::from_utf8(&compact[..2]) else {
        return false;
    };
    let Some(&(_, len)) = IBAN_LENGTHS.iter().find(|(c, _)| *c == country) else {
        return false;
    };
    if compact.len() != len || !compact[2..4].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut rem: u32 = 0;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        if b.is_ascii_digit() {
            rem = (rem * 10 + u32::from(b - b'0')) % 97;
        } else {
            rem = (rem * 100 + u32::from(b - b'A' + 10)) % 97;
        }
    }
    rem == 1
}

/// US SSN: area not 000, 666 or 900-999; group not 00; serial not 0000; and
/// not one of the numbers famously printed in advertising.
pub fn us_ssn(d: &[u8]) -> bool {
    if d.len() != 9 {
        return false;
    }
    let area = prefix_num(d, 3);
    let group = prefix_num(&d[3..], 2);
    let serial = prefix_num(&d[5..], 4);
    let whole = prefix_num(d, 9);
    area != 0
        && area != 666
        && area < 900
        && group != 0
        && serial != 0
        && whole != 78_051_120
        && whole != 219_099_999
        && whole != 123_456_789
}

/// ABA routing number: 9 digits, weights 3-7-1, sum divisible by 10, and a
/// valid Federal Reserve prefix.
pub fn aba_routing(d: &[u8]) -> bool {
    if d.len() != 9 {
        return false;
    }
    let prefix = prefix_num(d, 2);
    if !((0..=12).contains(&prefix)
        || (21..=32).contains(&prefix)
        || (61..=72).contains(&prefix)
        || prefix == 80)
    {
        return false;
    }
    if d.iter().all(|&x| x == 0) {
        return false;
    }
    let w = [3u32, 7, 1];
    let sum: u32 = d
        .iter()
        .enumerate()
        .map(|(i, &x)| w[i % 3] * u32::from(x))
        .sum();
    sum.is_multiple_of(10)
}

/// Shannon entropy of the characters of `s`, in bits per character.
pub fn shannon_entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut other = std::collections::HashMap::new();
    let mut n = 0u32;
    for c in s.chars() {
        n += 1;
        if (c as u32) < 256 {
            counts[c as usize] += 1;
        } else {
            *other.entry(c).or_insert(0u32) += 1;
        }
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    counts
        .iter()
        .copied()
        .chain(other.into_values())
        .filter(|&c| c > 0)
        .map(|c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Vec<u8> {
        digits(s)
    }

    #[test]
    fn luhn_accepts_valid_and_rejects_one_digit_off() {
        assert!(luhn(&d("79927398713")));
        assert!(!luhn(&d("79927398710")));
    }

    #[test]
    fn card_needs_luhn_and_a_network_prefix() {
        for ok in [
            "4539 1488 0343 6467",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
            "3530111333300000",
            "2223003122003222",
        ] {
            assert!(card(&d(ok)), "{ok}");
        }
        // Luhn-valid but no network starts with 9 (e.g. an order number).
        assert!(luhn(&d("9000000000000019")) && !card(&d("9000000000000019")));
        assert!(!card(&d("4539 1488 0343 6468")), "Luhn-invalid");
        assert!(!card(&d("37828224631000")), "Amex is 15 digits");
    }

    #[test]
    fn iban_checks_country_length_and_mod97() {
        assert!(iban("DE89 3704 0044 0532 0130 00"));
        assert!(iban("GB82WEST12345698765432"));
        assert!(iban("fr14 2004 1010 0505 0001 3m02 606"));
        assert!(!iban("DE89 3704 0044 0532 0130 01"), "checksum");
        assert!(!iban("DE89 3704 0044 0532 0130 0"), "length");
        assert!(!iban("ZZ89 3704 0044 0532 0130 00"), "country");
    }

    #[test]
    fn ssn_rejects_reserved_areas_groups_serials() {
        assert!(us_ssn(&d("536-22-1234")));
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "536-00-1234",
            "536-22-0000",
            "078-05-1120",
        ] {
            assert!(!us_ssn(&d(bad)), "{bad}");
        }
    }

    #[test]
    fn aba_checksum_and_prefix() {
        assert!(aba_routing(&d("021000021")));
        assert!(aba_routing(&d("011000015")));
        assert!(!aba_routing(&d("021000022")));
        assert!(!aba_routing(&d("991000021")), "prefix 99 unused");
    }

    #[test]
    fn entropy_separates_random_from_repetitive() {
        assert!(shannon_entropy("aaaaaaaaaaaa") < 0.01);
        assert!(shannon_entropy("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY") > 4.0);
        assert!((shannon_entropy("abcd") - 2.0).abs() < 1e-9);
    }

    #[test]
    fn validator_spec_dispatches() {
        assert!(ValidatorSpec::Entropy { min: 1.0 }.check("abcd"));
        assert!(!ValidatorSpec::Entropy { min: 3.0 }.check("abcd"));
        assert!(ValidatorSpec::Card.check("4111-1111-1111-1111"));
    }
}
