//! Calls a gRPC method with arbitrary bytes as its request, as a hostile or
//! broken client would: what the server answers to input that is not the
//! method's message.

use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

/// Sends `body` (already protobuf-encoded, or garbage) to `path`
/// (`/billing.ledger.v1.LedgerService/GetCreditGrant`) with the bearer `key`;
/// returns the raw response bytes or the status.
pub async fn call(
    channel: Channel,
    path: &'static str,
    key: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>, Status> {
    let mut grpc = ready(channel).await?;
    let request = crate::authed(key, body);
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(request, path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// Opens a server stream to `path` with `body` and reads its first message,
/// waiting at most `wait` for it (the stream may follow a feed forever):
/// the message if one came, or the status the stream failed with.
pub async fn first_of_stream(
    channel: Channel,
    path: &'static str,
    key: &str,
    body: Vec<u8>,
    wait: std::time::Duration,
) -> Result<Option<Vec<u8>>, Status> {
    let mut grpc = ready(channel).await?;
    let request = crate::authed(key, body);
    let path = http::uri::PathAndQuery::from_static(path);
    let mut inbound = grpc
        .server_streaming(request, path, RawCodec)
        .await?
        .into_inner();
    match tokio::time::timeout(wait, inbound.message()).await {
        Ok(message) => message,
        Err(_) => Ok(None),
    }
}

/// Opens a bidirectional stream to `path`, sends `bodies` as its messages
/// (valid encodings or garbage) and reads the answers: the raw messages
/// received, then the status the stream ended with (None: ended OK).
pub async fn stream(
    channel: Channel,
    path: &'static str,
    key: &str,
    bodies: Vec<Vec<u8>>,
) -> (Vec<Vec<u8>>, Option<Status>) {
    let mut grpc = match ready(channel).await {
        Ok(grpc) => grpc,
        Err(status) => return (Vec::new(), Some(status)),
    };
    let request = crate::authed(key, futures_util::stream::iter(bodies));
    let path = http::uri::PathAndQuery::from_static(path);
    let mut inbound = match grpc.streaming(request, path, RawCodec).await {
        Ok(response) => response.into_inner(),
        Err(status) => return (Vec::new(), Some(status)),
    };
    let mut received = Vec::new();
    loop {
        match inbound.message().await {
            Ok(Some(message)) => received.push(message),
            Ok(None) => return (received, None),
            Err(status) => return (received, Some(status)),
        }
    }
}

/// A raw client once the channel is ready (UNAVAILABLE when it cannot be).
async fn ready(channel: Channel) -> Result<tonic::client::Grpc<Channel>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    Ok(grpc)
}

/// Bytes in, bytes out.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let len = bytes::Buf::remaining(buf);
        Ok(Some(bytes::Buf::copy_to_bytes(buf, len).to_vec()))
    }
}
