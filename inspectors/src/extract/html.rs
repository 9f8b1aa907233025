//! HTML to plain text for apps that send message bodies as HTML (Teams,
//! Matrix `formatted_body`).

/// Drops tags, comments and `<script>`/`<style>` content, turns block ends
/// into line breaks and decodes entities. Not a sanitizer: the output is
/// only ever matched by DLP, never rendered.
pub fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    let mut skip_until: Option<&str> = None;
    while let Some(lt) = rest.find('<') {
        if skip_until.is_none() {
            out.push_str(&rest[..lt]);
        }
        rest = &rest[lt..];
        if rest.starts_with("<!--") {
            rest = rest.find("-->").map_or("", |e| &rest[e + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else {
            rest = "";
            break;
        };
        let tag = rest[1..gt].trim().to_ascii_lowercase();
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        match skip_until {
            Some(end) if tag.starts_with('/') && name == end => skip_until = None,
            Some(_) => {}
            None if !tag.starts_with('/') && (name == "script" || name == "style") => {
                skip_until = Some(if name == "script" { "script" } else { "style" });
            }
            None => {
                let block = matches!(
                    name.as_str(),
                    "br" | "p" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "blockquote" | "pre"
                );
                if block && (tag.starts_with('/') || name == "br") && !out.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
        rest = &rest[gt + 1..];
    }
    if skip_until.is_none() {
        out.push_str(rest);
    }
    let decoded = html_escape::decode_html_entities(&out).into_owned();
    decoded.trim().replace('\u{a0}', " ")
}

#[cfg(test)]
mod tests {
    use super::strip_html;

    #[test]
    fn strips_tags_and_decodes_entities() {
        assert_eq!(
            strip_html("<p>Q3 &amp; Q4 <b>numbers</b>&nbsp;&#x263A;</p><p>2nd</p>"),
            "Q3 & Q4 numbers \u{263A}\n2nd"
        );
        assert_eq!(
            strip_html("a<script>alert(1)</script>b<!-- c -->d<style>x{}</style>"),
            "abd"
        );
        assert_eq!(strip_html("x < y"), "x");
        assert_eq!(strip_html("1 &lt; 2"), "1 < 2");
    }
}
