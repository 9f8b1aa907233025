//! HTTPS records (RFC 9460, type 65) in DNS answers, rewritten so that
//! they stop advertising what the gateway refuses: the `h3` / `h3-*` ids
//! of the `alpn` SvcParam (QUIC is blocked for the name, so a client that
//! tries it only loses time) and the `ech` SvcParam (an Encrypted Client
//! Hello hides the server name the gateway's policy decides on).
//!
//! The rewrite keeps the message well-formed: a record's RDLENGTH follows
//! its new RDATA, a record left with nothing usable is dropped and its
//! section count lowered, and every compression pointer after a change is
//! moved by the bytes removed before its target. Anything the rewriter
//! cannot account for (a pointer into a rewritten record, a loop, a
//! length past the end, trailing bytes) is an error: the caller drops the
//! answer rather than relay what it could not read.

use crate::error::InspectError;

/// HTTPS resource record type.
pub const TYPE_HTTPS: u16 = 65;
const KEY_MANDATORY: u16 = 0;
const KEY_ALPN: u16 = 1;
const KEY_NO_DEFAULT_ALPN: u16 = 2;
const KEY_ECH: u16 = 5;
const HEADER: usize = 12;
/// Pointers followed at most while checking one name.
const MAX_HOPS: usize = 64;

/// What to take out of HTTPS records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Strip {
    /// `h3` and `h3-*` from `alpn`.
    pub h3: bool,
    /// The `ech` SvcParam.
    pub ech: bool,
}

/// The outcome of a rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewritten {
    /// Nothing to change: relay the message as it is.
    Unchanged,
    /// The message to relay instead.
    Changed {
        /// The rewritten message.
        message: Vec<u8>,
        /// HTTPS records rewritten (parameters removed).
        records_rewritten: usize,
        /// HTTPS records dropped (nothing usable remained).
        records_dropped: usize,
    },
}

/// Whether an ALPN id is HTTP/3 (`h3`, or a draft's `h3-29`).
pub fn is_h3(id: &[u8]) -> bool {
    id == b"h3" || id.starts_with(b"h3-")
}

/// The name an HTTPS query is about: `_8443._https.example.com` asks for
/// `example.com` on port 8443 (RFC 9460 §9.1).
pub fn https_name(qname: &str) -> &str {
    match qname.split_once("._https.") {
        Some((port, rest)) if port.starts_with('_') => rest,
        _ => qname,
    }
}

fn malformed(reason: &str) -> InspectError {
    InspectError::Malformed {
        protocol: "dns",
        reason: reason.to_owned(),
    }
}

/// One replaced byte range of the original message.
struct Edit {
    start: usize,
    end: usize,
    with: Vec<u8>,
}

/// What becomes of one HTTPS record.
enum Action {
    Keep,
    Replace(Vec<u8>),
    Drop,
}

/// Rewrites the HTTPS records of a whole DNS message (any section).
pub fn rewrite(msg: &[u8], strip: Strip) -> Result<Rewritten, InspectError> {
    if msg.len() < HEADER {
        return Err(malformed("shorter than a header"));
    }
    let count = |i: usize| usize::from(u16::from_be_bytes([msg[i], msg[i + 1]]));
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    let mut names = Names::default();
    let mut edits: Vec<Edit> = Vec::new();
    let mut dropped = [0usize; 3];
    let mut rewritten = 0;
    let mut pos = HEADER;
    for _ in 0..qd {
        pos = name(msg, pos, &mut names)?;
        pos = advance(msg, pos, 4)?;
    }
    for i in 0..an + ns + ar {
        let record = pos;
        pos = name(msg, pos, &mut names)?;
        let fixed = msg
            .get(pos..pos + 10)
            .ok_or_else(|| malformed("record header past the end"))?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let rdata = pos + 10;
        let end = advance(msg, rdata, rdlen)?;
        // Names inside these (RFC 1035) types may be compressed: their
        // pointers move too.
        let names_end = match rtype {
            2..=5 | 7..=9 | 12 => Some(name(msg, rdata, &mut names)?),
            6 => {
                let p = name(msg, rdata, &mut names)?;
                let p = name(msg, p, &mut names)?;
                Some(advance(msg, p, 20)?)
            }
            14 => {
                let p = name(msg, rdata, &mut names)?;
                Some(name(msg, p, &mut names)?)
            }
            15 => Some(name(msg, advance(msg, rdata, 2)?, &mut names)?),
            _ => None,
        };
        if names_end.is_some_and(|e| e != end) {
            return Err(malformed("record data does not end where RDLENGTH says"));
        }
        if rtype == TYPE_HTTPS && (strip.h3 || strip.ech) {
            match https(&msg[rdata..end], strip)? {
                Action::Keep => {}
                Action::Replace(data) => {
                    let mut with = (data.len() as u16).to_be_bytes().to_vec();
                    with.extend(data);
                    edits.push(Edit {
                        start: rdata - 2,
                        end,
                        with,
                    });
                    rewritten += 1;
                }
                Action::Drop => {
                    edits.push(Edit {
                        start: record,
                        end,
                        with: Vec::new(),
                    });
                    let section = if i < an {
                        0
                    } else if i < an + ns {
                        1
                    } else {
                        2
                    };
                    dropped[section] += 1;
                }
            }
        }
        pos = end;
    }
    if pos != msg.len() {
        return Err(malformed("bytes after the last record"));
    }
    if edits.is_empty() {
        return Ok(Rewritten::Unchanged);
    }
    let inside = |x: usize| edits.iter().any(|e| e.start <= x && x < e.end);
    // A name read through a jump must read the same after the change: every
    // pointer it follows is one that moves, no byte it reads is rewritten.
    if names.followed.iter().any(|p| !names.pointers.contains(p)) {
        return Err(malformed(
            "compression pointer followed through record data",
        ));
    }
    if names
        .reads
        .iter()
        .any(|&(a, b)| edits.iter().any(|e| e.start < b && a < e.end))
    {
        return Err(malformed("compression pointer into a rewritten record"));
    }
    let moved = |x: usize| {
        x - edits
            .iter()
            .filter(|e| e.end <= x)
            .map(|e| e.end - e.start - e.with.len())
            .sum::<usize>()
    };
    let mut out = Vec::with_capacity(msg.len());
    let mut at = 0;
    for e in &edits {
        out.extend_from_slice(&msg[at..e.start]);
        out.extend_from_slice(&e.with);
        at = e.end;
    }
    out.extend_from_slice(&msg[at..]);
    for (i, n) in dropped.iter().enumerate() {
        let c = 6 + 2 * i;
        let v = count(c) - n;
        out[c..c + 2].copy_from_slice(&(v as u16).to_be_bytes());
    }
    for p in names.pointers {
        if inside(p) {
            // In a dropped record's owner name: gone with it.
            continue;
        }
        let target = usize::from(u16::from_be_bytes([msg[p], msg[p + 1]]) & 0x3fff);
        if inside(target) {
            return Err(malformed("compression pointer into a rewritten record"));
        }
        let (np, nt) = (moved(p), moved(target));
        out[np..np + 2].copy_from_slice(&(0xc000 | nt as u16).to_be_bytes());
    }
    Ok(Rewritten::Changed {
        message: out,
        records_rewritten: rewritten,
        records_dropped: dropped.iter().sum(),
    })
}

fn advance(msg: &[u8], pos: usize, n: usize) -> Result<usize, InspectError> {
    let end = pos + n;
    if end > msg.len() {
        return Err(malformed("length past the end of the message"));
    }
    Ok(end)
}

/// The names of a message as the rewriter walks it.
#[derive(Default)]
struct Names {
    /// Where each name's own pointer is: these move with a change.
    pointers: Vec<usize>,
    /// Pointers followed after a first jump.
    followed: Vec<usize>,
    /// Byte ranges read after a jump.
    reads: Vec<(usize, usize)>,
}

/// Skips the name at `pos` (noting where its pointer is, if it ends in
/// one, and what decoding it read elsewhere) after checking that it
/// decodes: every pointer goes backwards to after the header, at most
/// [`MAX_HOPS`] of them, at most 255 bytes.
fn name(msg: &[u8], pos: usize, names: &mut Names) -> Result<usize, InspectError> {
    let mut at = pos;
    let mut end = None;
    let mut hops = 0;
    let mut length = 0;
    loop {
        let len = *msg.get(at).ok_or_else(|| malformed("name past the end"))?;
        let jumped = end.is_some();
        match len >> 6 {
            0 if len == 0 => {
                if jumped {
                    names.reads.push((at, at + 1));
                }
                return Ok(end.unwrap_or(at + 1));
            }
            0 => {
                length += 1 + usize::from(len);
                if length > 255 {
                    return Err(malformed("name longer than 255 bytes"));
                }
                let next = advance(msg, at, 1 + usize::from(len))?;
                if jumped {
                    names.reads.push((at, next));
                }
                at = next;
            }
            3 => {
                let low = *msg
                    .get(at + 1)
                    .ok_or_else(|| malformed("pointer past the end"))?;
                let target = usize::from(u16::from_be_bytes([len, low]) & 0x3fff);
                hops += 1;
                if target >= at || target < HEADER || hops > MAX_HOPS {
                    return Err(malformed("compression pointer loop or forward pointer"));
                }
                if jumped {
                    names.followed.push(at);
                    names.reads.push((at, at + 2));
                } else {
                    names.pointers.push(at);
                    end = Some(at + 2);
                }
                at = target;
            }
            _ => return Err(malformed("unknown label type")),
        }
    }
}

/// Rewrites one HTTPS record's data.
fn https(rd: &[u8], strip: Strip) -> Result<Action, InspectError> {
    let bad = || malformed("HTTPS record data");
    let priority = rd.get(..2).ok_or_else(bad)?;
    // TargetName: never compressed (RFC 9460 §2.2).
    let mut at = 2;
    loop {
        let len = usize::from(*rd.get(at).ok_or_else(bad)?);
        if len & 0xc0 != 0 {
            return Err(malformed("compressed or extended TargetName"));
        }
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    if at > rd.len() {
        return Err(bad());
    }
    if priority == [0, 0] {
        // AliasMode: no parameters to judge.
        return Ok(Action::Keep);
    }
    let head = &rd[..at];
    let mut params = Vec::new();
    let mut last = None;
    while at < rd.len() {
        let kv = rd.get(at..at + 4).ok_or_else(bad)?;
        let key = u16::from_be_bytes([kv[0], kv[1]]);
        let len = usize::from(u16::from_be_bytes([kv[2], kv[3]]));
        let value = rd.get(at + 4..at + 4 + len).ok_or_else(bad)?;
        if last.is_some_and(|l| key <= l) {
            return Err(malformed("SvcParams out of order"));
        }
        last = Some(key);
        params.push((key, value));
        at += 4 + len;
    }
    let mut removed = Vec::new();
    let mut changed = false;
    let mut out = head.to_vec();
    for &(key, orig) in &params {
        let value = orig;
        let value = match key {
            KEY_ALPN if strip.h3 => {
                let mut kept = Vec::new();
                let mut i = 0;
                let mut any = false;
                while i < value.len() {
                    let n = usize::from(value[i]);
                    let id = value.get(i + 1..i + 1 + n).ok_or_else(bad)?;
                    if n == 0 {
                        return Err(malformed("empty ALPN id"));
                    }
                    if is_h3(id) {
                        any = true;
                    } else {
                        kept.extend_from_slice(&value[i..i + 1 + n]);
                    }
                    i += 1 + n;
                }
                if !any {
                    Some(value.to_vec())
                } else if kept.is_empty() {
                    None
                } else {
                    Some(kept)
                }
            }
            KEY_ECH if strip.ech => None,
            _ => Some(value.to_vec()),
        };
        match value {
            Some(v) => {
                changed |= v.as_slice() != orig;
                out.extend(key.to_be_bytes());
                out.extend((v.len() as u16).to_be_bytes());
                out.extend(v);
            }
            None => {
                removed.push(key);
                changed = true;
            }
        }
    }
    if !changed {
        return Ok(Action::Keep);
    }
    let mandatory = params.iter().find(|p| p.0 == KEY_MANDATORY).map(|p| p.1);
    if let Some(m) = mandatory {
        if m.len() % 2 != 0 {
            return Err(malformed("odd mandatory list"));
        }
        let listed = |k: u16| m.chunks(2).any(|c| u16::from_be_bytes([c[0], c[1]]) == k);
        if removed.iter().any(|k| listed(*k)) {
            // A client must ignore a record missing a mandatory key.
            return Ok(Action::Drop);
        }
    }
    let no_default = params.iter().any(|p| p.0 == KEY_NO_DEFAULT_ALPN);
    if removed.contains(&KEY_ALPN) && no_default {
        // Only HTTP/3 was offered: nothing usable remains.
        return Ok(Action::Drop);
    }
    Ok(Action::Replace(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identify::dns::{parse, AnswerData};
    use proptest::prelude::*;

    fn labels(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in name.split('.').filter(|l| !l.is_empty()) {
            out.push(l.len() as u8);
            out.extend(l.as_bytes());
        }
        out.push(0);
        out
    }

    fn param(key: u16, value: &[u8]) -> Vec<u8> {
        let mut p = key.to_be_bytes().to_vec();
        p.extend((value.len() as u16).to_be_bytes());
        p.extend(value);
        p
    }

    fn alpn(ids: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for id in ids {
            v.push(id.len() as u8);
            v.extend(id.as_bytes());
        }
        v
    }

    fn https_rdata(params: &[Vec<u8>]) -> Vec<u8> {
        let mut rd = vec![0, 1, 0];
        for p in params {
            rd.extend(p);
        }
        rd
    }

    fn rr(owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
        let mut r = owner.to_vec();
        r.extend(rtype.to_be_bytes());
        r.extend(1u16.to_be_bytes());
        r.extend(ttl.to_be_bytes());
        r.extend((rdata.len() as u16).to_be_bytes());
        r.extend(rdata);
        r
    }

    /// A response for `www.test` type HTTPS: the HTTPS record, then a
    /// CNAME `alias.www.test` → `cdn.test` whose target name is written
    /// out, then an A record whose owner points at that target (a pointer
    /// past the rewritten record, which must move).
    fn response(https: &[u8]) -> (Vec<u8>, usize) {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0];
        m.extend(labels("www.test"));
        m.extend(TYPE_HTTPS.to_be_bytes());
        m.extend(1u16.to_be_bytes());
        m.extend(rr(&[0xc0, 12], TYPE_HTTPS, 300, https));
        let cname_owner = {
            let mut o = vec![5];
            o.extend(b"alias");
            o.extend([0xc0, 12]);
            o
        };
        let before_target = m.len() + cname_owner.len() + 10;
        m.extend(rr(&cname_owner, 5, 300, &labels("cdn.test")));
        let ptr = (0xc000 | before_target as u16).to_be_bytes();
        m.extend(rr(&ptr, 1, 60, &[192, 0, 2, 7]));
        (m, before_target)
    }

    fn answers(m: &[u8]) -> Vec<(String, AnswerData)> {
        parse(m)
            .expect("a well-formed message")
            .answers
            .into_iter()
            .map(|a| (a.name, a.data))
            .collect()
    }

    const BOTH: Strip = Strip {
        h3: true,
        ech: true,
    };

    #[test]
    fn h3_is_taken_out_and_later_pointers_move() {
        let rd = https_rdata(&[
            param(KEY_ALPN, &alpn(&["h3", "h3-29", "h2"])),
            param(KEY_ECH, b"\x00\x04ech!"),
        ]);
        let (m, _) = response(&rd);
        let before = answers(&m);
        let Rewritten::Changed {
            message,
            records_rewritten,
            records_dropped,
        } = rewrite(&m, BOTH).unwrap()
        else {
            panic!("nothing changed")
        };
        assert_eq!((records_rewritten, records_dropped), (1, 0));
        // The CNAME and the A record (whose owner pointer moved) read the same.
        assert_eq!(answers(&message), before);
        assert!(answers(&message)
            .iter()
            .any(|(n, d)| n == "cdn.test" && *d == AnswerData::Address([192, 0, 2, 7].into())));
        let expected = https_rdata(&[param(KEY_ALPN, &alpn(&["h2"]))]);
        let at = message
            .windows(expected.len())
            .position(|w| w == expected.as_slice())
            .expect("the new RDATA");
        assert_eq!(
            usize::from(u16::from_be_bytes([message[at - 2], message[at - 1]])),
            expected.len(),
            "RDLENGTH follows the data"
        );
        assert!(message.len() < m.len());
        // Idempotent: nothing left to take out.
        assert_eq!(rewrite(&message, BOTH).unwrap(), Rewritten::Unchanged);
    }

    #[test]
    fn only_what_is_asked_goes() {
        let rd = https_rdata(&[
            param(KEY_ALPN, &alpn(&["h3", "h2"])),
            param(KEY_ECH, b"\x00\x04ech!"),
        ]);
        let (m, _) = response(&rd);
        assert_eq!(rewrite(&m, Strip::default()).unwrap(), Rewritten::Unchanged);
        let Rewritten::Changed { message, .. } = rewrite(
            &m,
            Strip {
                h3: false,
                ech: true,
            },
        )
        .unwrap() else {
            panic!()
        };
        assert!(message.windows(2).any(|w| w == b"h3"), "h3 kept");
        assert!(!message.windows(4).any(|w| w == b"ech!"), "ech gone");
        let plain = https_rdata(&[param(KEY_ALPN, &alpn(&["h2", "http/1.1"]))]);
        assert_eq!(
            rewrite(&response(&plain).0, BOTH).unwrap(),
            Rewritten::Unchanged
        );
    }

    #[test]
    fn a_record_left_with_nothing_usable_is_dropped_and_counted() {
        // Only h3, and no default ALPN: nothing a TCP client could use.
        let rd = https_rdata(&[
            param(KEY_ALPN, &alpn(&["h3"])),
            param(KEY_NO_DEFAULT_ALPN, b""),
        ]);
        let (m, _) = response(&rd);
        let Rewritten::Changed {
            message,
            records_dropped,
            ..
        } = rewrite(&m, BOTH).unwrap()
        else {
            panic!()
        };
        assert_eq!(records_dropped, 1);
        assert_eq!(u16::from_be_bytes([message[6], message[7]]), 2, "ANCOUNT");
        assert_eq!(answers(&message), answers(&m));
        // Only h3 but the default (http/1.1) remains: the alpn key goes, the record stays.
        let rd = https_rdata(&[param(KEY_ALPN, &alpn(&["h3"])), param(3, &[1, 187])]);
        let Rewritten::Changed {
            message,
            records_dropped,
            ..
        } = rewrite(&response(&rd).0, BOTH).unwrap()
        else {
            panic!()
        };
        assert_eq!(records_dropped, 0);
        let port_only = https_rdata(&[param(3, &[1, 187])]);
        assert!(message
            .windows(port_only.len())
            .any(|w| w == port_only.as_slice()));
        // A removed key the record marks mandatory: the record goes.
        let rd = https_rdata(&[
            param(KEY_MANDATORY, &KEY_ECH.to_be_bytes()),
            param(KEY_ALPN, &alpn(&["h2"])),
            param(KEY_ECH, b"x"),
        ]);
        assert!(matches!(
            rewrite(&response(&rd).0, BOTH).unwrap(),
            Rewritten::Changed {
                records_dropped: 1,
                ..
            }
        ));
    }

    #[test]
    fn hostile_messages_are_errors_not_panics() {
        let rd = https_rdata(&[param(KEY_ALPN, &alpn(&["h3", "h2"]))]);
        let (m, target) = response(&rd);
        // A later pointer into the record being rewritten.
        let mut into = m.clone();
        let https_rdata_at = m
            .windows(rd.len())
            .position(|w| w == rd.as_slice())
            .unwrap();
        let n = into.len();
        into[n - 16..n - 14].copy_from_slice(&(0xc000 | (https_rdata_at + 3) as u16).to_be_bytes());
        assert!(
            rewrite(&into, BOTH).is_err(),
            "pointer into a rewritten record"
        );
        // A pointer to itself, and one forwards.
        let mut looped = m.clone();
        looped[n - 16..n - 14].copy_from_slice(&(0xc000 | (n - 16) as u16).to_be_bytes());
        assert!(rewrite(&looped, BOTH).is_err());
        let mut forward = m.clone();
        forward[n - 16..n - 14].copy_from_slice(&(0xc000 | (n - 4) as u16).to_be_bytes());
        assert!(rewrite(&forward, BOTH).is_err());
        // Two names pointing into each other, backwards each time, still loop.
        let mut ring = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        ring.extend([1, b'a', 0xc0, 12, 0, 1, 0, 1]);
        assert!(rewrite(&ring, BOTH).is_err());
        // Lengths past the end: RDLENGTH, an SvcParam, an ALPN id.
        let mut long = m.clone();
        long.truncate(target);
        assert!(rewrite(&long, BOTH).is_err());
        for bad in [
            https_rdata(&[vec![0, 1, 0, 9, 2, b'h', b'3']]),
            https_rdata(&[param(KEY_ALPN, &[9, b'h', b'3'])]),
            https_rdata(&[param(KEY_ALPN, &[0])]),
            https_rdata(&[param(KEY_ECH, b"x"), param(KEY_ALPN, &alpn(&["h3"]))]),
            vec![0, 1, 0xc0, 12],
        ] {
            assert!(rewrite(&response(&bad).0, BOTH).is_err(), "{bad:?}");
        }
        let mut trailing = m.clone();
        trailing.push(0);
        assert!(rewrite(&trailing, BOTH).is_err());
        assert!(rewrite(&m[..5], BOTH).is_err());
    }

    #[test]
    fn https_names_lose_their_port_prefix() {
        assert_eq!(https_name("_8443._https.chat.example"), "chat.example");
        assert_eq!(https_name("chat.example"), "chat.example");
    }

    #[test]
    fn a_name_read_through_record_data_is_refused_when_the_message_changes() {
        // After the HTTPS record: a TXT record owned by `t.test` (written
        // out, so it moves with the change) whose data looks like a label
        // and a pointer to that owner, and an A record whose owner points
        // into that data. Record data is not rewritten, so that inner
        // "pointer" would point to the wrong place after the change.
        let rd = https_rdata(&[param(KEY_ALPN, &alpn(&["h3", "h2"]))]);
        let mut m = vec![0, 9, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0];
        m.extend(labels("www.test"));
        m.extend(TYPE_HTTPS.to_be_bytes());
        m.extend(1u16.to_be_bytes());
        m.extend(rr(&[0xc0, 12], TYPE_HTTPS, 300, &rd));
        let txt_owner = m.len();
        let owner_name = labels("t.test");
        let txt_data = txt_owner + owner_name.len() + 10;
        let inner = (0xc000 | txt_owner as u16).to_be_bytes();
        m.extend(rr(&owner_name, 16, 300, &[1, b'a', inner[0], inner[1]]));
        let owner = (0xc000 | txt_data as u16).to_be_bytes();
        m.extend(rr(&owner, 1, 60, &[192, 0, 2, 9]));
        assert!(parse(&m).is_some(), "the original is readable");
        assert!(rewrite(&m, BOTH).is_err());
        // Unchanged, it is relayed as it is.
        assert_eq!(rewrite(&m, Strip::default()).unwrap(), Rewritten::Unchanged);
    }

    #[test]
    fn every_prefix_is_an_error_or_unchanged() {
        let rd = https_rdata(&[param(KEY_ALPN, &alpn(&["h3", "h2"]))]);
        let (m, _) = response(&rd);
        for cut in 0..m.len() {
            assert!(rewrite(&m[..cut], BOTH).is_err(), "cut {cut}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = rewrite(&bytes, BOTH);
        }

        #[test]
        fn mutated_answers_never_panic_and_changes_stay_parseable(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
        ) {
            let rd = https_rdata(&[param(KEY_ALPN, &alpn(&["h3", "h2"])), param(KEY_ECH, b"e")]);
            let (mut m, _) = response(&rd);
            for (i, b) in flips {
                let at = i.index(m.len());
                m[at] = b;
            }
            if let (Ok(Rewritten::Changed { message, .. }), Some(orig)) = (rewrite(&m, BOTH), parse(&m)) {
                let new = parse(&message).expect("a rewrite of a parseable message parses");
                prop_assert_eq!(new.answers, orig.answers);
            }
        }
    }
}
