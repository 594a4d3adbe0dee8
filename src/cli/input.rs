//! The tar stream `import-layer` and `applydiff` read: `-f FILE`, or
//! standard input when it is a pipe or a file, as upstream reads it, but
//! never a terminal (nobody types a tar; waiting silently on one looks
//! like a hang). Its size is known for a regular file, whether named or
//! redirected (`< layer.tar.gz`): what the progress bar counts against.

use std::fs::File;
use std::io::{IsTerminal, Read, Seek};
use std::os::fd::AsFd;
use std::path::Path;

use containers_storage::{Error, Op, Store};

use super::Failure;

/// An open input stream.
pub struct Input {
    pub reader: Box<dyn Read + Send>,
    /// Bytes left to read, when the input is a regular file.
    pub size: Option<u64>,
}

/// Opens `-f FILE`, else standard input unless it is a terminal.
pub fn open(file: Option<&Path>) -> Result<Input, Failure> {
    if let Some(path) = file {
        let file = File::open(path).map_err(|source| Error::io(Op::Open, path, source))?;
        let size = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        return Ok(Input {
            reader: Box::new(file),
            size,
        });
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(
            Failure::usage("standard input is a terminal, not a tar stream").with_hint(
                "give the tar as `-f FILE`, or on standard input from a pipe or a file \
                 (`< layer.tar`)",
            ),
        );
    }
    // A redirected file: read it through a duplicate of the descriptor
    // (the same open file, so the same offset) to know what is left.
    if let Ok(mut file) = stdin.as_fd().try_clone_to_owned().map(File::from) {
        let len = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        if let (Some(len), Ok(at)) = (len, file.stream_position()) {
            return Ok(Input {
                reader: Box::new(file),
                size: Some(len.saturating_sub(at)),
            });
        }
    }
    Ok(Input {
        reader: Box::new(stdin),
        size: None,
    })
}

/// When an argument that names no `kind` item is an existing file, what
/// the user most likely meant: `did you mean `-f PATH`?`, with `rest` (the
/// arguments still missing) after it.
pub fn file_not_item(store: &Store, arg: &str, rest: &str) -> Option<Failure> {
    if !Path::new(arg).is_file() {
        return None;
    }
    let e = store.layer(arg).err().filter(Error::is_not_known)?;
    Some(Failure::from(e).with_hint(format!(
        "{arg} is a file: did you mean `-f {}{rest}`?",
        shell_word(arg)
    )))
}

/// `word` as a shell reads it back: as it is when it holds nothing a
/// shell treats specially, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,=:@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("doc.tar"), "doc.tar");
        assert_eq!(shell_word("/tmp/a-b_c.tar.gz"), "/tmp/a-b_c.tar.gz");
        assert_eq!(shell_word("my layer.tar"), "'my layer.tar'");
        assert_eq!(shell_word("it's.tar"), r"'it'\''s.tar'");
        assert_eq!(shell_word(""), "''");
    }
}
