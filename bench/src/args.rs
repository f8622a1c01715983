//! A small command-line reader: `--flag value`, `--flag=value` and bare `--switch`es.

use std::collections::VecDeque;
use std::str::FromStr;

/// The arguments still to read.
#[derive(Debug, Clone)]
pub struct Args {
    items: VecDeque<String>,
    pending_value: Option<String>,
}

impl Args {
    /// This process's arguments, without the program name.
    pub fn from_env() -> Args {
        Args::from_iter(std::env::args().skip(1))
    }

    /// The next flag (`--name`), or `None` at the end.
    ///
    /// # Errors
    /// When the next argument is not a flag, or a flag's `=value` was left unread.
    pub fn next_flag(&mut self) -> Result<Option<String>, String> {
        if let Some(value) = self.pending_value.take() {
            return Err(format!("unexpected value {value:?}"));
        }
        let Some(item) = self.items.pop_front() else { return Ok(None) };
        if !item.starts_with("--") {
            return Err(format!("unexpected argument {item:?}"));
        }
        match item.split_once('=') {
            Some((flag, value)) => {
                self.pending_value = Some(value.to_owned());
                Ok(Some(flag.to_owned()))
            }
            None => Ok(Some(item)),
        }
    }

    /// The value of `flag`, just read.
    ///
    /// # Errors
    /// When there is none.
    pub fn value(&mut self, flag: &str) -> Result<String, String> {
        self.pending_value
            .take()
            .or_else(|| self.items.pop_front())
            .ok_or_else(|| format!("{flag} needs a value"))
    }

    /// The value of `flag`, parsed.
    ///
    /// # Errors
    /// When there is none, or it does not parse.
    pub fn parsed<T: FromStr>(&mut self, flag: &str) -> Result<T, String> {
        let value = self.value(flag)?;
        value.parse().map_err(|_| format!("{flag}: cannot read {value:?}"))
    }
}

impl FromIterator<String> for Args {
    fn from_iter<I: IntoIterator<Item = String>>(items: I) -> Args {
        Args { items: items.into_iter().collect(), pending_value: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn flags_take_values_in_both_spellings() {
        let mut a = args(&["--port", "80", "--size=64", "--quick"]);
        assert_eq!(a.next_flag().unwrap().as_deref(), Some("--port"));
        assert_eq!(a.parsed::<u16>("--port"), Ok(80));
        assert_eq!(a.next_flag().unwrap().as_deref(), Some("--size"));
        assert_eq!(a.value("--size").as_deref(), Ok("64"));
        assert_eq!(a.next_flag().unwrap().as_deref(), Some("--quick"));
        assert_eq!(a.next_flag(), Ok(None));
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(args(&["stray"]).next_flag().is_err());
        let mut a = args(&["--port"]);
        a.next_flag().unwrap();
        assert!(a.value("--port").is_err());
        let mut a = args(&["--port", "x"]);
        a.next_flag().unwrap();
        assert!(a.parsed::<u16>("--port").is_err());
        let mut a = args(&["--quick=yes"]);
        a.next_flag().unwrap();
        assert!(a.next_flag().is_err(), "a switch given a value");
    }
}
