//! Reads the tensors of a PyTorch checkpoint (`torch.save`'s zip of a pickle and raw storages)
//! without Python: the published ULTRA weights ship in this format. Only what a state dict
//! needs is understood (dicts, tuples, strings, numbers, `_rebuild_tensor_v2` over float
//! storages); anything else in the pickle is carried as an opaque value and never read.

use std::collections::BTreeMap;
use std::io::Read;

#[derive(Debug, thiserror::Error)]
pub enum PthError {
    #[error("not a PyTorch zip checkpoint: {0}")]
    Zip(String),
    #[error("the checkpoint's pickle cannot be read: {0}")]
    Pickle(String),
    #[error("tensor {name}: {reason}")]
    Tensor { name: String, reason: String },
}

/// A float tensor: its shape and its values in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The float tensors of a checkpoint, by name. `entry` picks a nested state dict (ULTRA's
/// checkpoints keep theirs under "model"); `None` reads the top-level dict.
pub fn read_state_dict(
    bytes: &[u8],
    entry: Option<&str>,
) -> Result<BTreeMap<String, Tensor>, PthError> {
    let files = zip_entries(bytes)?;
    let (pkl_name, pkl) = files
        .iter()
        .find(|(name, _)| name.ends_with("data.pkl"))
        .ok_or_else(|| PthError::Zip("no data.pkl inside".into()))?;
    let prefix = pkl_name.trim_end_matches("data.pkl");
    if let Some((_, order)) = files
        .iter()
        .find(|(n, _)| *n == format!("{prefix}byteorder"))
        && order.as_slice() != b"little"
    {
        return Err(PthError::Zip(
            "only little-endian storages are supported".into(),
        ));
    }
    let root = Unpickler::new(pkl).run()?;
    let dict = match entry {
        None => root,
        Some(key) => root
            .dict_get(key)
            .cloned()
            .ok_or_else(|| PthError::Pickle(format!("no {key:?} entry at the top level")))?,
    };
    let Value::Dict(items) = dict else {
        return Err(PthError::Pickle("the state dict is not a dict".into()));
    };
    let mut out = BTreeMap::new();
    for (k, v) in items {
        let (Value::Str(name), Value::Tensor(t)) = (k, v) else {
            continue;
        };
        let bad = |reason: String| PthError::Tensor {
            name: name.clone(),
            reason,
        };
        if t.dtype != "FloatStorage" {
            return Err(bad(format!("{} is not supported (only float32)", t.dtype)));
        }
        let path = format!("{prefix}data/{}", t.key);
        let raw = files
            .iter()
            .find(|(n, _)| *n == path)
            .map(|(_, b)| b.as_slice())
            .ok_or_else(|| bad(format!("storage {path} is missing")))?;
        let numel: usize = t.shape.iter().product();
        let mut data = Vec::with_capacity(numel);
        // Strided read: checkpoints are contiguous in practice, but a view saved as-is is not.
        let mut index = vec![0usize; t.shape.len()];
        for _ in 0..numel {
            let at = t.offset
                + index
                    .iter()
                    .zip(&t.stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            let b = raw
                .get(at * 4..at * 4 + 4)
                .ok_or_else(|| bad(format!("element {at} lies beyond its storage")))?;
            data.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < t.shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        out.insert(
            name.clone(),
            Tensor {
                shape: t.shape.clone(),
                data,
            },
        );
    }
    Ok(out)
}

/// The files of a zip archive (stored or deflated), by name.
fn zip_entries(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, PthError> {
    let err = |m: &str| PthError::Zip(m.to_owned());
    let u16_at = |at: usize| -> Result<usize, PthError> {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            .ok_or_else(|| err("truncated"))
    };
    let u32_at = |at: usize| -> Result<usize, PthError> {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| err("truncated"))
    };
    // The end-of-central-directory record: within the last 64 KiB + 22 bytes (its comment).
    let floor = bytes.len().saturating_sub(22 + 65_535);
    let eocd = (floor..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| bytes[i..].starts_with(&[0x50, 0x4b, 0x05, 0x06]))
        .ok_or_else(|| err("no end of central directory"))?;
    let count = u16_at(eocd + 10)?;
    let mut at = u32_at(eocd + 16)?;
    if count == 0xffff || at == 0xffff_ffff {
        return Err(err("zip64 archives are not supported"));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        if u32_at(at)? != 0x0201_4b50 {
            return Err(err("bad central directory entry"));
        }
        let method = u16_at(at + 10)?;
        let compressed = u32_at(at + 20)?;
        let size = u32_at(at + 24)?;
        let (name_len, extra_len, comment_len) =
            (u16_at(at + 28)?, u16_at(at + 30)?, u16_at(at + 32)?);
        let local = u32_at(at + 42)?;
        let name = bytes
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(|| err("truncated"))?;
        let name = String::from_utf8_lossy(name).into_owned();
        at += 46 + name_len + extra_len + comment_len;
        if u32_at(local)? != 0x0403_4b50 {
            return Err(err("bad local file header"));
        }
        let start = local + 30 + u16_at(local + 26)? + u16_at(local + 28)?;
        let raw = bytes
            .get(start..start + compressed)
            .ok_or_else(|| err("an entry lies beyond the archive"))?;
        let data = match method {
            0 => raw.to_vec(),
            8 => {
                let mut v = Vec::with_capacity(size);
                flate2::read::DeflateDecoder::new(raw)
                    .read_to_end(&mut v)
                    .map_err(|e| PthError::Zip(format!("{name}: {e}")))?;
                v
            }
            m => return Err(PthError::Zip(format!("{name}: compression method {m}"))),
        };
        out.push((name, data));
    }
    Ok(out)
}

/// A storage reference as `torch.save` writes it (the persistent id of a tensor's data).
#[derive(Debug, Clone, PartialEq)]
struct Storage {
    dtype: String,
    key: String,
}

#[derive(Debug, Clone, PartialEq)]
struct TensorRef {
    dtype: String,
    key: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage(Storage),
    Tensor(TensorRef),
    /// Anything else a REDUCE builds (never read).
    Opaque,
    Mark,
}

impl Value {
    fn dict_get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    fn usize(&self) -> Option<usize> {
        match self {
            Value::Int(i) => usize::try_from(*i).ok(),
            _ => None,
        }
    }

    fn usizes(&self) -> Option<Vec<usize>> {
        match self {
            Value::Tuple(v) | Value::List(v) => v.iter().map(Value::usize).collect(),
            _ => None,
        }
    }
}

/// The subset of the pickle machine (protocol 2+) that `torch.save` uses.
struct Unpickler<'a> {
    bytes: &'a [u8],
    at: usize,
    stack: Vec<Value>,
    memo: rustc_hash::FxHashMap<u32, Value>,
}

impl<'a> Unpickler<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            at: 0,
            stack: Vec::new(),
            memo: Default::default(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PthError> {
        let s = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or_else(|| PthError::Pickle("truncated".into()))?;
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PthError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, PthError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, PthError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String, PthError> {
        let rest = &self.bytes[self.at.min(self.bytes.len())..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| PthError::Pickle("unterminated line".into()))?;
        self.at += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    fn string(&mut self, n: usize) -> Result<Value, PthError> {
        let b = self.take(n)?;
        Ok(Value::Str(String::from_utf8_lossy(b).into_owned()))
    }

    fn pop(&mut self) -> Result<Value, PthError> {
        self.stack
            .pop()
            .ok_or_else(|| PthError::Pickle("stack underflow".into()))
    }

    fn top(&mut self) -> Result<&mut Value, PthError> {
        self.stack
            .last_mut()
            .ok_or_else(|| PthError::Pickle("stack underflow".into()))
    }

    /// Everything above the topmost mark, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PthError> {
        let mark = self
            .stack
            .iter()
            .rposition(|v| *v == Value::Mark)
            .ok_or_else(|| PthError::Pickle("no mark".into()))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn run(mut self) -> Result<Value, PthError> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64))
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i64))
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v as i64))
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes.
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err(PthError::Pickle("integer wider than 64 bits".into()));
                    }
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate() {
                        v |= (x as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v))
                }
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
                    self.stack.push(Value::Float(v))
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v)
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v)
                }
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(PthError::Pickle("stack underflow".into()));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items))
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(k, v);
                }
                b'r' => {
                    let k = self.u32()?;
                    let v = self.top()?.clone();
                    self.memo.insert(k, v);
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(k, v);
                }
                b'h' | b'j' => {
                    let k = if op == b'h' {
                        self.u8()? as u32
                    } else {
                        self.u32()?
                    };
                    let v = self
                        .memo
                        .get(&k)
                        .cloned()
                        .ok_or_else(|| PthError::Pickle(format!("memo {k} is unset")))?;
                    self.stack.push(v)
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err(PthError::Pickle("STACK_GLOBAL of non-strings".into())),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(persistent(pid)?)
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.stack.push(reduce(callable, args)?)
                }
                0x81 => {
                    // NEWOBJ: cls, args
                    self.pop()?;
                    self.pop()?;
                    self.stack.push(Value::Opaque)
                }
                b'b' => {
                    // BUILD: state set on an object (an OrderedDict's metadata): ignored.
                    self.pop()?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(items) => items.push((k, v)),
                        _ => return Err(PthError::Pickle("SETITEM on a non-dict".into())),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let Value::Dict(d) = self.top()? else {
                        return Err(PthError::Pickle("SETITEMS on a non-dict".into()));
                    };
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(items) => items.push(v),
                        _ => return Err(PthError::Pickle("APPEND on a non-list".into())),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => return Err(PthError::Pickle("APPENDS on a non-list".into())),
                    }
                }
                other => {
                    return Err(PthError::Pickle(format!(
                        "opcode 0x{other:02x} at byte {} is not supported",
                        self.at - 1
                    )));
                }
            }
        }
    }
}

/// `('storage', <class FloatStorage>, key, location, numel)`.
fn persistent(pid: Value) -> Result<Value, PthError> {
    let Value::Tuple(items) = pid else {
        return Err(PthError::Pickle("a persistent id is not a tuple".into()));
    };
    match items.as_slice() {
        [
            Value::Str(kind),
            Value::Global(_, dtype),
            Value::Str(key),
            ..,
        ] if kind == "storage" => Ok(Value::Storage(Storage {
            dtype: dtype.clone(),
            key: key.clone(),
        })),
        _ => Err(PthError::Pickle("unknown persistent id".into())),
    }
}

fn reduce(callable: Value, args: Value) -> Result<Value, PthError> {
    let Value::Global(module, name) = callable else {
        return Ok(Value::Opaque);
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") => {
            let Value::Tuple(a) = args else {
                return Err(PthError::Pickle(
                    "_rebuild_tensor_v2 without arguments".into(),
                ));
            };
            let bad = || PthError::Pickle("_rebuild_tensor_v2 with unexpected arguments".into());
            let Some(Value::Storage(s)) = a.first() else {
                return Err(bad());
            };
            let offset = a.get(1).and_then(Value::usize).ok_or_else(bad)?;
            let shape = a.get(2).and_then(Value::usizes).ok_or_else(bad)?;
            let stride = a.get(3).and_then(Value::usizes).ok_or_else(bad)?;
            if shape.len() != stride.len() {
                return Err(bad());
            }
            Ok(Value::Tensor(TensorRef {
                dtype: s.dtype.clone(),
                key: s.key.clone(),
                offset,
                shape,
                stride,
            }))
        }
        _ => Ok(Value::Opaque),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published checkpoint: every tensor ULTRA's model has, with its shape.
    #[test]
    fn reads_the_shipped_ultra_checkpoint() {
        let bytes = super::super::EMBEDDED_CHECKPOINT;
        let dict = read_state_dict(bytes, Some("model")).expect("readable");
        assert_eq!(dict.len(), 82);
        let t = &dict["entity_model.layers.3.linear.weight"];
        assert_eq!(t.shape, vec![64, 128]);
        assert_eq!(t.data.len(), 64 * 128);
        assert_eq!(dict["entity_model.mlp.2.weight"].shape, vec![1, 128]);
        assert_eq!(
            dict["relation_model.layers.5.relation.weight"].shape,
            vec![4, 64]
        );
        assert!(t.data.iter().all(|x| x.is_finite()));
        assert!(t.data.iter().any(|&x| x != 0.0));
    }

    #[test]
    fn refuses_what_is_not_a_checkpoint() {
        let err = read_state_dict(b"not a zip at all", None).expect_err("not a zip");
        assert!(matches!(err, PthError::Zip(_)), "{err}");
        let mut bytes = super::super::EMBEDDED_CHECKPOINT.to_vec();
        bytes.truncate(bytes.len() / 2);
        assert!(read_state_dict(&bytes, Some("model")).is_err());
    }
}
