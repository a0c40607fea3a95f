//! The codec every generated client uses (`build.rs` names it with `codec_path`): prost's own
//! codec, except that the decoder first hands the received message bytes to the wire log.
//!
//! The hand-over goes through a task-local slot that exists only while a wire-log sink is
//! listening ([`capture`]); without one, `try_with` fails at once and nothing is copied.

use std::cell::RefCell;
use std::future::Future;
use std::marker::PhantomData;

use prost::bytes::Buf;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

tokio::task_local! {
    /// The payload of the last message decoded while the slot was set (the gRPC message body,
    /// without its 5-byte length prefix).
    static RECEIVED: RefCell<Option<Vec<u8>>>;
}

/// Runs `future` with the received-bytes slot set; returns its output and the payload of the
/// last message decoded meanwhile (`None` when nothing was decoded).
pub(crate) async fn capture<F: Future>(future: F) -> (F::Output, Option<Vec<u8>>) {
    RECEIVED
        .scope(RefCell::new(None), async move {
            let output = future.await;
            let bytes = RECEIVED
                .try_with(|slot| slot.borrow_mut().take())
                .ok()
                .flatten();
            (output, bytes)
        })
        .await
}

/// Keeps a copy of the bytes about to be decoded, when (and only when) a slot is set.
fn keep(buf: &DecodeBuf<'_>) {
    let _ = RECEIVED.try_with(|slot| {
        // A `DecodeBuf` is one contiguous buffer: its chunk is the whole message.
        let chunk = Buf::chunk(buf);
        *slot.borrow_mut() = (chunk.len() == buf.remaining()).then(|| chunk.to_vec());
    });
}

/// The buffers every call or stream starts with, for encoding and for decoding. tonic's
/// default (8 KiB each) is sized for bulk streams; etcd's requests and most answers are a few
/// hundred bytes, and a client holding a thousand open streams (one `LeaseKeepAlive` per
/// session, a `Lock/Lock` per waiter) paid 16 KiB for each. A buffer still grows to the
/// message it has to hold; only the first allocation is smaller.
pub(crate) fn buffers() -> BufferSettings {
    BufferSettings::new(1024, 32 * 1024)
}

/// [`ProstCodec`] with a decoder that reports the received bytes to the wire log.
#[derive(Debug)]
pub(crate) struct WireCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for WireCodec<T, U> {
    fn default() -> Self {
        WireCodec(PhantomData)
    }
}

impl<T, U> Codec for WireCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = WireDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        WireDecoder(ProstCodec::<T, U>::raw_decoder(buffers()))
    }
}

/// [`ProstDecoder`] that first copies the message bytes into the wire log's slot, if set.
#[derive(Debug)]
pub(crate) struct WireDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default> Decoder for WireDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        keep(buf);
        self.0.decode(buf)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
