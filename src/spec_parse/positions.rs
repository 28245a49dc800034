//! Where each field of a YAML document sits, by path (`stages[1].plugin`), so that errors
//! found after parsing (a bad cron expression, an unknown relation) can still name a line.
//! serde_yaml forgets positions once a value is parsed; yaml-rust2's event stream keeps them.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Path -> position of the key (for mapping entries) or of the item (for sequence items).
#[derive(Debug, Default)]
pub struct Positions(HashMap<String, Pos>);

enum Frame {
    /// In a mapping: the path of the mapping, and the key just read (awaiting its value).
    Map {
        path: String,
        key: Option<String>,
    },
    Seq {
        path: String,
        index: usize,
    },
}

struct Builder {
    stack: Vec<Frame>,
    out: HashMap<String, Pos>,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn pos(m: Marker) -> Pos {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Pos {
        line: m.line(),
        col: m.col() + 1,
    }
}

impl Builder {
    /// The path a new value at this point of the stream gets, recording its position.
    fn value_path(&mut self, mark: Marker) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                self.out.entry(p.clone()).or_insert(pos(mark));
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { path, key }) = self.stack.last_mut()
                    && key.is_none()
                {
                    let p = join(path, &value);
                    self.out.entry(p).or_insert(pos(mark));
                    *key = Some(value);
                    return;
                }
                self.value_path(mark);
            }
            Event::Alias(_) => {
                self.value_path(mark);
            }
            Event::MappingStart(..) => {
                let path = self.value_path(mark).unwrap_or_default();
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path(mark).unwrap_or_default();
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl Positions {
    /// Positions of every path in `text`; empty when the text does not parse (serde_yaml
    /// reports that error with its own position).
    pub fn of(text: &str) -> Self {
        let mut b = Builder {
            stack: Vec::new(),
            out: HashMap::new(),
        };
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut b, false).is_err() {
            return Self::default();
        }
        Self(b.out)
    }

    /// The position of `path`, or of its nearest ancestor that has one.
    pub fn find(&self, path: &str) -> Option<Pos> {
        let mut p = path;
        loop {
            if let Some(found) = self.0.get(p) {
                return Some(*found);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_items() {
        let text = "name: demo\nstages:\n  - name: a\n    plugin: oracle\n  - { name: b, plugin: http }\nmodel:\n  dim: 64\n";
        let p = Positions::of(text);
        assert_eq!(p.find("name"), Some(Pos { line: 1, col: 1 }));
        assert_eq!(p.find("stages[0].plugin"), Some(Pos { line: 4, col: 5 }));
        assert_eq!(p.find("stages[1].plugin").map(|p| p.line), Some(5));
        assert_eq!(p.find("model.dim"), Some(Pos { line: 7, col: 3 }));
        // A path below a known one falls back to it.
        assert_eq!(p.find("model.dim.nope"), Some(Pos { line: 7, col: 3 }));
        assert_eq!(p.find("stages[7]"), p.find("stages"));
    }
}
