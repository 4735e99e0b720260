//! Topic selectors, as a stream asks for them: `*` (every topic), an exact topic, or an RFC 6570
//! URI template (`https://shop.example/orders/{id}`) that matches every topic it could expand
//! to, as Mercure matches templates. A template is compiled once into an anchored regular
//! expression; a selector is also equal to itself, so a topic spelled like a template matches it.

use app::event::topic::{self, Topic};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};

/// What one selector matches.
#[derive(Clone, Debug)]
pub enum Selector {
    All,
    Exact(Topic),
    Template(Arc<Template>),
}

/// A compiled URI template.
#[derive(Debug)]
pub struct Template {
    source: String,
    regex: regex::Regex,
}

/// The most a compiled template may take, so a hostile selector cannot cost more than this.
const MAX_COMPILED: usize = 256 * 1024;

impl Selector {
    /// Parses a selector; the error names it and says what is wrong.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let bad = |why: String| format!("topic selector {s:?}: {why}");
        topic::check(s).map_err(bad)?;
        if s == "*" {
            return Ok(Selector::All);
        }
        if s.contains(['{', '}']) {
            return Template::compile(s).map(|t| Selector::Template(Arc::new(t))).map_err(bad);
        }
        Topic::new(s).map(Selector::Exact).map_err(bad)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Selector::All => "*",
            Selector::Exact(topic) => topic.as_str(),
            Selector::Template(template) => &template.source,
        }
    }

    pub fn matches(&self, topic: &Topic) -> bool {
        match self {
            Selector::All => true,
            Selector::Exact(exact) => exact == topic,
            Selector::Template(template) => template.matches(topic.as_str()),
        }
    }
}

/// Two selectors are the same when they are written the same.
impl PartialEq for Selector {
    fn eq(&self, other: &Selector) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Selector {}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Templates compiled once for every stream that asks for the same one, for as long as any
/// stream holds it: a reconnect storm of streams on one template compiles it once.
#[derive(Default)]
pub struct Selectors {
    // A std mutex: held to look up or insert, never while compiling.
    compiled: Mutex<Compiled>,
}

#[derive(Default)]
struct Compiled {
    templates: HashMap<String, Weak<Template>>,
    /// The size at which dead entries are next swept out: twice the live ones after a sweep.
    sweep_at: usize,
}

impl Selectors {
    /// [`Selector::parse`], reusing a template already compiled.
    pub fn parse(&self, s: &str) -> Result<Selector, String> {
        if !s.contains(['{', '}']) {
            return Selector::parse(s);
        }
        if let Some(template) = self.lock().templates.get(s).and_then(Weak::upgrade) {
            return Ok(Selector::Template(template));
        }
        let selector = Selector::parse(s)?;
        if let Selector::Template(template) = &selector {
            let mut compiled = self.lock();
            if compiled.templates.len() >= compiled.sweep_at {
                compiled.templates.retain(|_, t| t.strong_count() > 0);
                compiled.sweep_at = (compiled.templates.len() * 2).max(64);
            }
            compiled.templates.insert(s.to_owned(), Arc::downgrade(template));
        }
        Ok(selector)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Compiled> {
        // Every section leaves the map whole.
        self.compiled.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How an expression's operator expands its variables (RFC 6570, appendix A).
struct Operator {
    first: &'static str,
    separator: &'static str,
    named: bool,
    /// Reserved characters pass unencoded (`+` and `#`).
    reserved: bool,
}

fn operator(op: Option<char>) -> Result<Operator, String> {
    let (first, separator, named, reserved) = match op {
        None => ("", ",", false, false),
        Some('+') => ("", ",", false, true),
        Some('#') => ("#", ",", false, true),
        Some('.') => (".", ".", false, false),
        Some('/') => ("/", "/", false, false),
        Some(';') => (";", ";", true, false),
        Some('?') => ("?", "&", true, false),
        Some('&') => ("&", "&", true, false),
        Some(other) => return Err(format!("the operator {other:?} is not supported")),
    };
    Ok(Operator { first, separator, named, reserved })
}

const UNRESERVED: &str = r"A-Za-z0-9\-._~";
const RESERVED: &str = r":/?#\[\]@!$&'()*+,;=";
const PCT: &str = "%[0-9A-Fa-f]{2}";

impl Template {
    fn compile(source: &str) -> Result<Template, String> {
        let mut pattern = String::from("^");
        let mut rest = source;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err("a `}` closes no expression".into());
            }
            pattern.push_str(&regex::escape(&rest[..open]));
            let close = rest[open..].find('}').ok_or("an expression is not closed")? + open;
            pattern.push_str(&expression(&rest[open + 1..close])?);
            rest = &rest[close + 1..];
        }
        pattern.push_str(&regex::escape(rest));
        pattern.push('$');
        let regex = regex::RegexBuilder::new(&pattern)
            .size_limit(MAX_COMPILED)
            .build()
            .map_err(|_| "the template is too complex".to_owned())?;
        Ok(Template { source: source.to_owned(), regex })
    }

    fn matches(&self, topic: &str) -> bool {
        topic == self.source || self.regex.is_match(topic)
    }
}

/// The pattern of one expression (the text between its braces): any of its variables, each
/// defined or not, joined as the operator joins them.
fn expression(body: &str) -> Result<String, String> {
    let mut chars = body.chars();
    let op = match chars.next() {
        Some(c) if "+#./;?&=,!@|".contains(c) => Some(c),
        Some(_) => None,
        None => return Err("an expression is empty".into()),
    };
    let op_len = op.map_or(0, char::len_utf8);
    let operator = operator(op)?;
    let allowed = if operator.reserved { format!("{UNRESERVED}{RESERVED}") } else { UNRESERVED.to_owned() };
    let char_ = format!("(?:[{allowed}]|{PCT})");
    let key = format!("(?:[{UNRESERVED}]|{PCT})+");
    let mut alternatives = Vec::new();
    for spec in body[op_len..].split(',') {
        let (name, modifier) = match spec.find([':', '*']) {
            Some(at) => (&spec[..at], &spec[at..]),
            None => (spec, ""),
        };
        check_varname(name)?;
        let explode = modifier == "*";
        let value = match modifier {
            "" | "*" => format!("{char_}*"),
            prefix => {
                let n: u16 = prefix[1..].parse().map_err(|_| format!("the modifier {prefix:?} is not valid"))?;
                if !(1..=9999).contains(&n) || prefix[1..].len() > 4 {
                    return Err(format!("the modifier {prefix:?} is not valid"));
                }
                format!("{char_}{{0,{n}}}")
            }
        };
        // A list unexploded is comma-joined; exploded, joined by the separator (with names for
        // a named operator, or keys for an associative array).
        let sep = regex::escape(operator.separator);
        let name = regex::escape(name);
        let alternative = match (operator.named, explode) {
            (false, false) => format!("{value}(?:,{value})*"),
            (false, true) => format!("(?:{key}=)?{value}(?:{sep}(?:{key}=)?{value})*"),
            (true, false) if operator.first == ";" => format!("{name}(?:={value}(?:,{value})*)?"),
            (true, false) => format!("{name}={value}(?:,{value})*"),
            (true, true) => format!("{key}(?:={value})?(?:{sep}{key}(?:={value})?)*"),
        };
        alternatives.push(alternative);
    }
    let any = alternatives.join("|");
    let first = regex::escape(operator.first);
    let sep = regex::escape(operator.separator);
    Ok(format!("(?:{first}(?:{any})(?:{sep}(?:{any}))*)?"))
}

/// A variable name: letters, digits, `_` and percent-escapes, in parts joined by single dots.
fn check_varname(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let mut i = 0;
    let mut valid = !name.is_empty() && !name.starts_with('.') && !name.ends_with('.') && !name.contains("..");
    while valid && i < bytes.len() {
        match bytes[i] {
            b'%' => {
                valid = bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' => i += 1,
            _ => valid = false,
        }
    }
    if valid {
        Ok(())
    } else {
        Err(format!("{name:?} is not a variable name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(selector: &str, topic: &str) -> bool {
        Selector::parse(selector).unwrap().matches(&Topic::new(topic).unwrap())
    }

    /// `*`, exact topics, and templates of every operator match what they could expand to.
    #[test]
    fn selectors_match_as_mercure_matches_them() {
        assert!(matches("*", "anything at all"));
        assert!(matches("https://shop.example/orders/42", "https://shop.example/orders/42"));
        assert!(!matches("https://shop.example/orders/42", "https://shop.example/orders/421"));
        let orders = "https://shop.example/orders/{id}";
        assert!(matches(orders, "https://shop.example/orders/42"));
        assert!(matches(orders, "https://shop.example/orders/a-b_c.d~e%20f"));
        assert!(matches(orders, orders), "a template is equal to itself");
        assert!(!matches(orders, "https://shop.example/orders/42/items"), "no slash in a simple value");
        assert!(!matches(orders, "https://shop.example/users/42"));
        assert!(!matches(orders, "https://shop.example/orders/42?x=1"));
        assert!(matches("https://example.com/books/{?page}", "https://example.com/books/?page=2"));
        assert!(matches("https://example.com/books/{?page}", "https://example.com/books/"));
        assert!(!matches("https://example.com/books/{?page}", "https://example.com/books/?other=2"));
        assert!(matches("/books{/id*}", "/books/1/2/3"));
        assert!(matches("{+path}/here", "/foo/bar/here"));
        assert!(matches("https://example.com/{a}/{b}", "https://example.com/x/y"));
        assert!(matches("/users/{name:3}", "/users/abc"));
        assert!(!matches("/users/{name:3}", "/users/abcd"));
        assert!(matches("/q{?x,y}", "/q?x=1&y=2"));
        assert!(matches("/m{;v}", "/m;v=1"));
        assert!(matches("/d{.ext}", "/d.json"));
        assert!(matches("/f{#frag}", "/f#a/b"));
        assert!(!matches("/f{#frag}", "/fx"));
        // Regex characters in the literal parts are literal.
        assert!(matches("https://a.b/(x)+{id}", "https://a.b/(x)+7"));
        assert!(!matches("https://a.b/(x)+{id}", "https://aXb/(x)+7"));
    }

    /// One template asked for by many streams is compiled once, and forgotten when none holds it.
    #[test]
    fn templates_are_compiled_once_while_held() {
        let selectors = Selectors::default();
        let (Ok(Selector::Template(a)), Ok(Selector::Template(b))) =
            (selectors.parse("/o/{id}"), selectors.parse("/o/{id}"))
        else {
            panic!("templates")
        };
        assert!(Arc::ptr_eq(&a, &b), "the second stream shares the first one's");
        drop((a, b));
        for i in 0..200 {
            let _ = selectors.parse(&format!("/t{i}/{{id}}")).unwrap();
        }
        assert!(selectors.lock().templates.len() < 200, "dead templates are swept out");
        assert!(matches!(selectors.parse("/plain"), Ok(Selector::Exact(_))));
    }

    /// A bad selector says which it is and what is wrong.
    #[test]
    fn bad_selectors_say_why() {
        for (bad, why) in [
            ("", "empty"),
            ("a\u{7}", "control"),
            ("/o/{id", "not closed"),
            ("/o/id}", "closes no expression"),
            ("/o/{}", "empty"),
            ("/o/{=x}", "not supported"),
            ("/o/{a b}", "not a variable name"),
            ("/o/{x:0}", "not valid"),
            ("/o/{x:10000}", "not valid"),
        ] {
            let err = Selector::parse(bad).unwrap_err();
            assert!(err.contains(why) && err.contains(&format!("{bad:?}")), "{bad:?}: {err}");
        }
    }
}
