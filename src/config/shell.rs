//! Is a `script` command line one simple command (run as `sh -c "exec …"`, so the app itself
//! gets signals and its exit status is the instance's), or a compound one (`a && b`, `a; b`,
//! `a | b`, `a &`, several lines, `if …`), which must run whole as `sh -c "…"`?
//!
//! Invariant: `exec` is only ever put in front of a line that, read as the shell would, is one
//! command with no list or pipeline operator outside quotes; anything unsure counts as compound,
//! because a wrong `exec` silently drops the rest of the line (the server never starts), while a
//! missing one only keeps a shell in between.

/// Words that start a compound command (or change what the first word means).
const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac", "{",
    "}", "!", "function", "select", "[[", "exec",
];

/// True when `line` is a single simple command that `exec` may prefix.
pub fn is_simple_command(line: &str) -> bool {
    let line = line.trim();
    if line.is_empty() {
        return false;
    }
    let first = line.split_whitespace().next().unwrap_or("");
    // `FOO=1 node app.js`: `exec FOO=1 …` would try to run a program named `FOO=1`.
    let assignment = first.split_once('=').is_some_and(|(k, _)| {
        !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    });
    if KEYWORDS.contains(&first) || assignment || first.starts_with('(') {
        return false;
    }
    !has_operator(line)
}

/// A `;`, `&`, `|` (so also `&&`, `||`), newline, or `(` outside quotes; an unterminated quote
/// counts as one (unsure).
fn has_operator(line: &str) -> bool {
    let mut chars = line.chars().peekable();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                // An escaped character is literal (`\;`); a trailing backslash-newline joins lines.
                if chars.next().is_none() {
                    return true;
                }
                prev = 'x';
                continue;
            }
            // The guard skips to the closing quote (none: unsure, so compound).
            '\'' if !chars.by_ref().any(|x| x == '\'') => return true,
            '\'' => {}
            '"' => {
                let mut closed = false;
                while let Some(x) = chars.next() {
                    match x {
                        '\\' => {
                            chars.next();
                        }
                        '"' => {
                            closed = true;
                            break;
                        }
                        _ => {}
                    }
                }
                if !closed {
                    return true;
                }
            }
            // `>&2`, `2>&1`, `&>`: a redirection, not a background job.
            '&' if prev == '>' || prev == '<' || chars.peek() == Some(&'>') => {}
            ';' | '&' | '|' | '\n' | '\r' | '`' => return true,
            '(' if prev != '$' => return true,
            '#' if prev.is_whitespace() => return false, // the rest is a comment
            _ => {}
        }
        prev = c;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_commands() {
        for s in [
            "node server.js",
            "npm start",
            "python3 -m http.server 8000",
            "node app.js > /tmp/x 2>&1",
            "echo 'a && b' \"c; d\"",
            "node -e \"console.log(1|2)\"",
            "echo a\\;b",
            "echo $(date) $HOME",
            "node app.js # && not a command",
        ] {
            assert!(is_simple_command(s), "{s}");
        }
    }

    #[test]
    fn compound_commands() {
        for s in [
            "npm run migrate && node server.js",
            "sh -c 'exit 0' && touch done",
            "a || b",
            "a; b",
            "a | b",
            "a & b",
            "sleep 1 &",
            "a\nb",
            "if true; then node app.js; fi",
            "(cd x && node y)",
            "{ a; }",
            "FOO=1 node app.js",
            "echo 'unterminated",
            "echo `date`",
            "exec node app.js",
        ] {
            assert!(!is_simple_command(s), "{s}");
        }
    }
}
