//! What one DNS answer teaches the gateway: the addresses it gives for
//! the name the client asked (following the CNAME chain from that name,
//! nothing else in the message). Its HTTPS records are rewritten by the
//! inspectors' `identify::svcb`.

use std::net::IpAddr;

use gatehouse_inspectors::identify::dns::{AnswerData, DnsMessage};

/// CNAME links followed from the question at most.
const MAX_CHAIN: usize = 8;

/// The addresses the answer gives for its question's name, each with its
/// record's TTL: A/AAAA records owned by the name or by a name the CNAME
/// chain from it reaches. An error answer gives none.
pub fn addresses(m: &DnsMessage) -> Vec<(IpAddr, u32)> {
    if !m.response || m.rcode != 0 {
        return Vec::new();
    }
    let mut names = vec![m.qname.as_str()];
    for _ in 0..MAX_CHAIN {
        let next = m.answers.iter().find_map(|a| match &a.data {
            AnswerData::Alias(target)
                if names.contains(&a.name.as_str()) && !names.contains(&target.as_str()) =>
            {
                Some(target.as_str())
            }
            _ => None,
        });
        match next {
            Some(n) => names.push(n),
            None => break,
        }
    }
    m.answers
        .iter()
        .filter(|a| names.contains(&a.name.as_str()))
        .filter_map(|a| match a.data {
            AnswerData::Address(ip) => Some((ip, a.ttl)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_inspectors::identify::dns::{parse, TYPE_A};

    fn rr(owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
        let mut r = owner.to_vec();
        r.extend(rtype.to_be_bytes());
        r.extend(1u16.to_be_bytes());
        r.extend(ttl.to_be_bytes());
        r.extend((rdata.len() as u16).to_be_bytes());
        r.extend(rdata);
        r
    }

    fn name(n: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in n.split('.') {
            out.push(l.len() as u8);
            out.extend(l.as_bytes());
        }
        out.push(0);
        out
    }

    #[test]
    fn addresses_follow_the_cname_chain_from_the_question_only() {
        // web.whatsapp.com → mmx-ds.cdn.whatsapp.net → 157.240.1.60 (TTL 60);
        // an unrelated A record for other.test is not the question's.
        let mut m = gatehouse_inspectors::identify::dns::build_query(9, "web.whatsapp.com", TYPE_A);
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 3;
        m.extend(rr(&[0xc0, 12], 5, 300, &name("mmx-ds.cdn.whatsapp.net")));
        m.extend(rr(
            &name("mmx-ds.cdn.whatsapp.net"),
            1,
            60,
            &[157, 240, 1, 60],
        ));
        m.extend(rr(&name("other.test"), 1, 60, &[192, 0, 2, 1]));
        let msg = parse(&m).unwrap();
        assert_eq!(addresses(&msg), vec![("157.240.1.60".parse().unwrap(), 60)]);
        // An error answer teaches nothing.
        m[3] = 0x83;
        assert!(addresses(&parse(&m).unwrap()).is_empty());
    }
}
