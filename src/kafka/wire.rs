//! A raw connection to one broker, speaking Kafka's wire protocol through `kafka-protocol`,
//! for the requests rskafka cannot make as shopstream needs them: the fetches of
//! [`super::fetch`], and the consumer-group commits of [`super::group`].
//!
//! One request at a time per connection: a caller owns the connection while its request is in
//! flight, and a connection whose request failed or ran out of time is dropped, never reused,
//! so a late answer can never be read as the answer to another request. The socket has
//! `TCP_NODELAY` set when it is opened (rskafka's sockets get it from [`super::nodelay`]); the
//! caller bounds every call with the same deadline as rskafka's calls (`--kafka-timeout`).
//! With SASL configured, [`BrokerConnection::connect`] authenticates as rskafka does for its
//! own connections (SaslHandshake, then SaslAuthenticate steps driven by rsasl, pure Rust), so
//! every broker connection shopstream opens logs in alike.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{SaslCredentials, SaslMechanism};

/// Largest answer read (a fetch answer holds at least one whole batch, which the broker's
/// `message.max.bytes` bounds, 1 MiB by default; topics may raise it).
const MAX_FRAME: usize = 128 * 1024 * 1024;

/// What went wrong on a raw connection.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WireError {
    /// The connection could not be opened, or broke.
    #[error("connection to {addr}: {message}")]
    Io { addr: String, message: String },
    /// The answer could not be read, or the broker does not speak a version we need.
    #[error("{0}")]
    Protocol(String),
}

/// One connection to one broker, with the API versions it announced.
#[derive(Debug)]
pub struct BrokerConnection {
    addr: String,
    stream: TcpStream,
    correlation: i32,
    versions: HashMap<i16, (i16, i16)>,
}

impl BrokerConnection {
    /// Connects to `addr` (`host:port`), asks which API versions it speaks, and logs in with
    /// `sasl` when given.
    pub async fn connect(addr: &str, sasl: Option<&SaslCredentials>) -> Result<Self, WireError> {
        let io = |e: std::io::Error| WireError::Io {
            addr: addr.to_string(),
            message: e.to_string(),
        };
        let stream = TcpStream::connect(addr).await.map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let mut connection = Self {
            addr: addr.to_string(),
            stream,
            correlation: 0,
            versions: HashMap::new(),
        };
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("shopstream"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let answer: ApiVersionsResponse = connection.call(ApiKey::ApiVersions, 3, &request).await?;
        if answer.error_code != 0 {
            return Err(WireError::Protocol(format!(
                "{addr} refused ApiVersions (error {})",
                answer.error_code
            )));
        }
        connection.versions = answer
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        if let Some(sasl) = sasl {
            connection.authenticate(sasl).await?;
        }
        Ok(connection)
    }

    /// SASL: the handshake names the mechanism, then rsasl's steps go back and forth in
    /// SaslAuthenticate requests until it is done. A refusal carries the broker's message
    /// (never the password).
    async fn authenticate(&mut self, sasl: &SaslCredentials) -> Result<(), WireError> {
        use rsasl::prelude::{Mechname, SASLClient, SASLConfig};
        let mechanism = match sasl.mechanism {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        };
        let addr = self.addr.clone();
        let refused = |why: String| {
            WireError::Protocol(format!("SASL {mechanism} login to {addr} refused: {why}"))
        };
        let version = self.version(ApiKey::SaslHandshake, (1, 1))?;
        let handshake: SaslHandshakeResponse = self
            .call(
                ApiKey::SaslHandshake,
                version,
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(mechanism)),
            )
            .await?;
        if handshake.error_code != 0 {
            let offered: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(refused(format!(
                "error {} (the broker offers {})",
                handshake.error_code,
                offered.join(", ")
            )));
        }
        let config =
            SASLConfig::with_credentials(None, sasl.username.clone(), sasl.password.clone())
                .map_err(|e| refused(e.to_string()))?;
        let name = Mechname::parse(mechanism.as_bytes()).map_err(|e| refused(e.to_string()))?;
        let mut session = SASLClient::new(config)
            .start_suggested(&[name])
            .map_err(|e| refused(e.to_string()))?;
        let version = self.version(ApiKey::SaslAuthenticate, (0, 2))?;
        let mut received: Option<Bytes> = None;
        loop {
            let mut to_send = Vec::new();
            let state = session
                .step(received.as_deref(), &mut to_send)
                .map_err(|e| refused(e.to_string()))?;
            if state.has_sent_message() {
                let answer: SaslAuthenticateResponse = self
                    .call(
                        ApiKey::SaslAuthenticate,
                        version,
                        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(to_send)),
                    )
                    .await?;
                if answer.error_code != 0 {
                    let message = answer.error_message.as_ref().map_or("", |m| m.as_str());
                    return Err(refused(format!("error {}: {message}", answer.error_code)));
                }
                received = Some(answer.auth_bytes);
            }
            if state.is_finished() {
                return Ok(());
            }
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The highest version of `key` both sides speak, within `ours` (lowest, highest).
    pub fn version(&self, key: ApiKey, ours: (i16, i16)) -> Result<i16, WireError> {
        let (min, max) =
            self.versions.get(&(key as i16)).copied().ok_or_else(|| {
                WireError::Protocol(format!("{} does not offer {key:?}", self.addr))
            })?;
        let version = max.min(ours.1);
        if version < min.max(ours.0) {
            return Err(WireError::Protocol(format!(
                "{} speaks {key:?} v{min}-v{max}, shopstream v{}-v{}",
                self.addr, ours.0, ours.1
            )));
        }
        Ok(version)
    }

    /// Sends one request and reads its answer.
    pub async fn call<Req, Resp>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, WireError>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable,
    {
        let protocol = |what: &str, e: anyhow::Error| {
            WireError::Protocol(format!("{key:?} v{version} {what}: {e}"))
        };
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("shopstream")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, Req::header_version(version))
            .map_err(|e| protocol("header", e))?;
        request
            .encode(&mut body, version)
            .map_err(|e| protocol("request", e))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_u32(body.len() as u32);
        frame.extend_from_slice(&body);
        let io = |e: std::io::Error| WireError::Io {
            addr: self.addr.clone(),
            message: e.to_string(),
        };
        self.stream.write_all(&frame).await.map_err(io)?;

        let length = self.stream.read_u32().await.map_err(io)? as usize;
        if length > MAX_FRAME {
            return Err(WireError::Protocol(format!(
                "{key:?} answer of {length} bytes is larger than {MAX_FRAME}"
            )));
        }
        let mut answer = vec![0u8; length];
        self.stream.read_exact(&mut answer).await.map_err(io)?;
        let mut answer = Bytes::from(answer);
        let response_header = key.response_header_version(version);
        let header = kafka_protocol::messages::ResponseHeader::decode(&mut answer, response_header)
            .map_err(|e| protocol("answer header", e))?;
        if header.correlation_id != self.correlation {
            return Err(WireError::Protocol(format!(
                "{key:?} answer for request {} while waiting for {}",
                header.correlation_id, self.correlation
            )));
        }
        let decoded = Resp::decode(&mut answer, version).map_err(|e| protocol("answer", e))?;
        if answer.has_remaining() {
            tracing::debug!(
                ?key,
                version,
                left = answer.remaining(),
                "answer longer than decoded"
            );
        }
        Ok(decoded)
    }
}
