//! Streaming decode: push chunks of a coded body, decoded bytes go to a
//! sink as they come, under the caps, in bounded memory.

use std::io::{self, Write};

use flate2::{Decompress, FlushDecompress, Status};

use super::{is_zlib, Caps, CodecError, Coding};

/// Input bytes handed to one layer per call: bounds what an inner layer
/// buffers before the next layer takes it.
const SLICE: usize = 4 << 10;

/// A layer's output end: counts bytes against the layer's cap and passes
/// them on.
#[derive(Debug)]
struct Capped<O> {
    inner: O,
    written: u64,
    cap: u64,
    capped: bool,
}

impl<O: Write> Write for Capped<O> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.cap.saturating_sub(self.written);
        let n = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if n > 0 {
            self.inner.write_all(&buf[..n])?;
            self.written += n as u64;
        }
        if n < buf.len() {
            self.capped = true;
            return Err(io::Error::other("decoded output over cap"));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// deflate through flate2's inflater directly: unlike its `Write`
/// adapters it tells a stream that ended from one that was cut off. Waits
/// for two bytes to tell zlib from raw.
struct Inflate<O> {
    state: Option<Decompress>,
    head: Vec<u8>,
    ended: bool,
    buf: Vec<u8>,
    out: O,
}

impl<O: Write> Inflate<O> {
    fn new(out: O) -> Self {
        Inflate {
            state: None,
            head: Vec::new(),
            ended: false,
            buf: Vec::new(),
            out,
        }
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if self.state.is_none() {
            self.head.extend_from_slice(data);
            if self.head.len() < 2 {
                return Ok(());
            }
            self.state = Some(Decompress::new(is_zlib(&self.head)));
            self.buf = Vec::with_capacity(32 << 10);
            let head = std::mem::take(&mut self.head);
            return self.run(&head);
        }
        self.run(data)
    }

    /// Inflates `input` (all of it, unless the stream ends first: what
    /// follows the end is ignored, as the one-shot readers do).
    fn run(&mut self, mut input: &[u8]) -> io::Result<()> {
        let Some(state) = self.state.as_mut() else {
            return Ok(());
        };
        while !self.ended {
            self.buf.clear();
            let (in0, out0) = (state.total_in(), state.total_out());
            let status = state
                .decompress_vec(input, &mut self.buf, FlushDecompress::None)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let used = (state.total_in() - in0) as usize;
            input = &input[used..];
            self.out.write_all(&self.buf)?;
            if status == Status::StreamEnd {
                self.ended = true;
            } else if used == 0 && state.total_out() == out0 {
                break;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.state.is_none() && self.head.is_empty() {
            return Ok(());
        }
        self.run(&[])?;
        if self.ended {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated"))
        }
    }
}

/// One layer's decoder writing into `O`.
enum Dec<O: Write> {
    Identity(O),
    Inflate(Inflate<O>),
    Gzip(flate2::write::MultiGzDecoder<O>),
    Brotli(Box<brotli::DecompressorWriter<O>>),
    Zstd(Box<zstd::stream::zio::Writer<O, zstd::stream::raw::Decoder<'static>>>),
}

impl<O: Write> Dec<O> {
    fn new(coding: Coding, out: O) -> io::Result<Self> {
        Ok(match coding {
            Coding::Identity => Dec::Identity(out),
            Coding::Deflate => Dec::Inflate(Inflate::new(out)),
            Coding::Gzip => Dec::Gzip(flate2::write::MultiGzDecoder::new(out)),
            Coding::Brotli => Dec::Brotli(Box::new(brotli::DecompressorWriter::new(out, 4096))),
            Coding::Zstd => Dec::Zstd(Box::new(zstd::stream::zio::Writer::new(
                out,
                zstd::stream::raw::Decoder::new()?,
            ))),
        })
    }

    fn out(&mut self) -> &mut O {
        match self {
            Dec::Identity(o) => o,
            Dec::Inflate(d) => &mut d.out,
            Dec::Gzip(d) => d.get_mut(),
            Dec::Brotli(d) => d.get_mut(),
            Dec::Zstd(d) => d.writer_mut(),
        }
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Dec::Identity(o) => o.write_all(data),
            Dec::Inflate(d) => d.write_all(data),
            Dec::Gzip(d) => d.write_all(data),
            Dec::Brotli(d) => d.write_all(data),
            Dec::Zstd(d) => d.write_all(data),
        }
    }

    /// Flushes the end of the stream; an error means it was cut or corrupt.
    fn finish(&mut self) -> io::Result<()> {
        match self {
            Dec::Identity(_) => Ok(()),
            Dec::Inflate(d) => d.finish(),
            Dec::Gzip(d) => d.try_finish(),
            Dec::Brotli(d) => d.close(),
            Dec::Zstd(d) => d.finish(),
        }
    }
}

/// One coding layer: its decoder, its input count and its capped output.
struct Stage<O: Write> {
    coding: Coding,
    dec: Dec<Capped<O>>,
    input: u64,
}

impl<O: Write> Stage<O> {
    fn new(coding: Coding, out: O) -> Result<Self, CodecError> {
        let capped = Capped {
            inner: out,
            written: 0,
            cap: u64::MAX,
            capped: false,
        };
        let dec = Dec::new(coding, capped).map_err(|e| CodecError::Corrupt {
            coding,
            reason: e.to_string(),
        })?;
        Ok(Stage {
            coding,
            dec,
            input: 0,
        })
    }

    /// Counts `n` more input bytes and raises the cap accordingly.
    fn take_input(&mut self, n: usize, caps: &Caps) {
        self.input += n as u64;
        if self.coding != Coding::Identity {
            self.dec.out().cap = caps.allowed(self.input);
        }
    }

    fn error(&mut self, e: io::Error, caps: &Caps) -> CodecError {
        let coding = self.coding;
        if self.dec.out().capped {
            CodecError::OverCap {
                coding,
                max_output: caps.max_output,
                max_ratio: caps.max_ratio,
            }
        } else if e.kind() == io::ErrorKind::UnexpectedEof {
            CodecError::Truncated { coding }
        } else {
            CodecError::Corrupt {
                coding,
                reason: e.to_string(),
            }
        }
    }
}

/// Undoes a chain of codings chunk by chunk, writing decoded bytes into a
/// sink `S` as they come.
///
/// Memory stays bounded whatever the input: each layer's output is capped
/// ([`Caps`], counted against that layer's own input so far), and inner
/// layers of a chain hand on their output in small slices. After the first
/// problem, decoding stops for good: [`push`](Self::push) returns it once,
/// later calls do nothing, and the sink keeps what was decoded before it.
pub struct StreamDecoder<S: Write> {
    /// Outer layers of a chain (undone first), each buffering its output
    /// for the next.
    outer: Vec<Stage<Vec<u8>>>,
    /// The last layer undone, writing into the caller's sink.
    last: Stage<S>,
    caps: Caps,
    stopped: Option<CodecError>,
}

impl<S: Write> std::fmt::Debug for StreamDecoder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let codings: Vec<Coding> = self
            .outer
            .iter()
            .map(|s| s.coding)
            .chain([self.last.coding])
            .collect();
        f.debug_struct("StreamDecoder")
            .field("undoing", &codings)
            .field("stopped", &self.stopped)
            .finish()
    }
}

impl<S: Write> StreamDecoder<S> {
    /// A decoder for `chain` (in the order the codings were applied, as
    /// [`parse_chain`](super::parse_chain) gives it) writing into `sink`.
    /// An empty chain passes bytes through uncapped.
    pub fn new(chain: &[Coding], caps: Caps, sink: S) -> Result<Self, CodecError> {
        let mut undo = chain.iter().rev().copied();
        let (outer, last) = match chain.len() {
            0 => (Vec::new(), Stage::new(Coding::Identity, sink)?),
            n => {
                let outer = undo
                    .by_ref()
                    .take(n - 1)
                    .map(|c| Stage::new(c, Vec::new()))
                    .collect::<Result<_, _>>()?;
                (outer, Stage::new(chain[0], sink)?)
            }
        };
        Ok(StreamDecoder {
            outer,
            last,
            caps,
            stopped: None,
        })
    }

    /// Whether any coding is undone (false: bytes pass through as they are).
    pub fn decodes(&self) -> bool {
        self.last.coding != Coding::Identity
    }

    /// The sink.
    pub fn sink(&mut self) -> &mut S {
        &mut self.last.dec.out().inner
    }

    /// The problem that stopped decoding, if one did.
    pub fn stopped(&self) -> Option<&CodecError> {
        self.stopped.as_ref()
    }

    /// Decodes the next chunk of coded bytes into the sink. Returns the
    /// problem that stops decoding, once; afterwards chunks are ignored.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), CodecError> {
        if self.stopped.is_some() {
            return Ok(());
        }
        let r = self.feed(0, chunk);
        self.stop(r)
    }

    /// End of the coded bytes: flushes what the layers still hold and
    /// checks that each coding ended properly (a cut-off body is
    /// [`CodecError::Truncated`] or `Corrupt`).
    pub fn finish(&mut self) -> Result<(), CodecError> {
        if self.stopped.is_some() {
            return Ok(());
        }
        let r = self.finish_from(0);
        self.stop(r)
    }

    fn stop(&mut self, r: Result<(), CodecError>) -> Result<(), CodecError> {
        if let Err(e) = &r {
            self.stopped = Some(e.clone());
        }
        r
    }

    /// Writes `data` into layer `i` and what comes out on through the rest.
    fn feed(&mut self, i: usize, data: &[u8]) -> Result<(), CodecError> {
        let caps = self.caps;
        if i == self.outer.len() {
            self.last.take_input(data.len(), &caps);
            return self
                .last
                .dec
                .write_all(data)
                .map_err(|e| self.last.error(e, &caps));
        }
        self.outer[i].take_input(data.len(), &caps);
        for slice in data.chunks(SLICE) {
            let r = self.outer[i].dec.write_all(slice);
            self.pass_on(i)?;
            r.map_err(|e| self.outer[i].error(e, &caps))?;
        }
        Ok(())
    }

    /// Hands layer `i`'s buffered output to layer `i + 1`.
    fn pass_on(&mut self, i: usize) -> Result<(), CodecError> {
        let mut out = std::mem::take(&mut self.outer[i].dec.out().inner);
        let r = if out.is_empty() {
            Ok(())
        } else {
            self.feed(i + 1, &out)
        };
        out.clear();
        self.outer[i].dec.out().inner = out;
        r
    }

    fn finish_from(&mut self, i: usize) -> Result<(), CodecError> {
        let caps = self.caps;
        if i == self.outer.len() {
            if self.last.input == 0 {
                // No bytes at all (an empty body sent with its coding
                // header, as HEAD and 204 responses are): nothing to check.
                return Ok(());
            }
            return self
                .last
                .dec
                .finish()
                .map_err(|e| self.last.error(e, &caps));
        }
        if self.outer[i].input == 0 {
            return Ok(());
        }
        let r = self.outer[i].dec.finish();
        self.pass_on(i)?;
        r.map_err(|e| self.outer[i].error(e, &caps))?;
        self.finish_from(i + 1)
    }
}
