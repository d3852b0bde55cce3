//! CONNECT to CONNACK: read the CONNECT, authenticate, open or resume the session, answer.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tracing::debug;

use super::Accepted;
use super::Peer;
use crate::auth::Credentials;
use crate::codec::{
    self, ConnAck, Connect, DecodeError, Packet, Properties, Protocol, ReasonCode, Will,
};
use crate::context::Context;
use crate::metrics::Metrics;
use crate::router::{ConnectRequest, Event};

/// Runs the handshake; `None` when the connection must close (the reason was already sent).
pub(super) async fn accept<S>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    peer: &Peer,
    ctx: &Arc<Context>,
) -> Option<Accepted>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let connect = match tokio::time::timeout(
        ctx.config.connect_timeout(),
        read_connect(stream, rbuf, ctx),
    )
    .await
    {
        Ok(Ok(connect)) => connect,
        Ok(Err(Some(e))) => {
            debug!(peer = ?peer.address, error = %e, "Refusing a bad CONNECT");
            Metrics::add(&ctx.metrics.protocol_errors, 1);
            if let DecodeError::UnsupportedProtocol(_) = e {
                refuse(
                    stream,
                    Protocol::V311,
                    ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                )
                .await;
            }
            return None;
        }
        Ok(Err(None)) => return None,
        Err(_) => {
            debug!(peer = ?peer.address, "No CONNECT in time; closing");
            return None;
        }
    };
    let protocol = connect.protocol;
    match admit(connect, peer, ctx).await {
        Ok((accepted, connack)) => {
            let mut buf = BytesMut::new();
            codec::encode(&Packet::ConnAck(connack), protocol, &mut buf);
            // A failed write shows up as a closed socket in the connection loop, which then
            // hands the session back the normal way.
            let _ = stream.write_all(&buf).await;
            let _ = stream.flush().await;
            Some(accepted)
        }
        Err(code) => {
            Metrics::add(&ctx.metrics.connections_refused, 1);
            refuse(stream, protocol, code).await;
            None
        }
    }
}

/// Reads until a whole first packet is there. `Err(None)` for a closed socket.
async fn read_connect<S>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    ctx: &Context,
) -> Result<Box<Connect>, Option<DecodeError>>
where
    S: AsyncRead + Unpin,
{
    let max = ctx.config.max_packet_size as usize;
    loop {
        // Refuse anything that is not a CONNECT from its first byte, rather than waiting for
        // the body a random length prefix announces.
        if rbuf.first().is_some_and(|&b| b != 0x10) {
            return Err(Some(DecodeError::Protocol("first packet is not CONNECT")));
        }
        match codec::decode(rbuf, Protocol::V311, max).map_err(Some)? {
            Some(Packet::Connect(connect)) => return Ok(connect),
            Some(_) => return Err(Some(DecodeError::Protocol("first packet is not CONNECT"))),
            None => {}
        }
        rbuf.reserve(512);
        match stream.read_buf(rbuf).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => Metrics::add(&ctx.metrics.bytes_received, n as u64),
        }
    }
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, protocol: Protocol, code: ReasonCode) {
    let mut buf = BytesMut::new();
    let connack = ConnAck {
        session_present: false,
        code,
        properties: Properties::default(),
    };
    codec::encode(&Packet::ConnAck(connack), protocol, &mut buf);
    let _ = stream.write_all(&buf).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

/// A will is kept for the life of the connection; as slices of the CONNECT, its topic, payload
/// and properties would keep the handshake's whole read buffer allocated, so they are copied.
/// Only the properties a will message carries are kept.
fn owned_will(will: Will) -> Box<Will> {
    let copy = |s: &ByteString| ByteString::from(&**s);
    let p = &will.properties;
    Box::new(Will {
        topic: copy(&will.topic),
        payload: Bytes::copy_from_slice(&will.payload),
        qos: will.qos,
        retain: will.retain,
        properties: Properties {
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            will_delay_interval: p.will_delay_interval,
            content_type: p.content_type.as_ref().map(copy),
            response_topic: p.response_topic.as_ref().map(copy),
            correlation_data: p.correlation_data.as_deref().map(Bytes::copy_from_slice),
            user_properties: p
                .user_properties
                .iter()
                .map(|(k, v)| (copy(k), copy(v)))
                .collect(),
            ..Properties::default()
        },
    })
}

/// Decides whether the client may connect and opens its session.
/// `connect` stays boxed: an async function keeps its arguments twice, and a CONNECT is nearly
/// 1 KiB, which every concurrent handshake would hold.
async fn admit(
    mut connect: Box<Connect>,
    peer: &Peer,
    ctx: &Arc<Context>,
) -> Result<(Accepted, ConnAck), ReasonCode> {
    let protocol = connect.protocol;
    let v5 = protocol.is_v5();
    let config = &ctx.config;
    let mut props = Properties::default();

    let client_id = if connect.client_id.is_empty() {
        // 3.1.1 allows an empty client id only with a clean session (MQTT-3.1.3-8).
        if !v5 && !connect.clean_start {
            return Err(ReasonCode::CLIENT_ID_NOT_VALID);
        }
        let id = ByteString::from(format!("ironbridge-{:016x}", rand::random::<u64>()));
        if v5 {
            props.assigned_client_identifier = Some(id.clone());
        }
        id
    } else {
        // Copied out: as a slice of the CONNECT it would keep the whole handshake read buffer
        // allocated for as long as the session lives.
        ByteString::from(&*connect.client_id)
    };
    if connect.properties.authentication_method.is_some() {
        // Enhanced authentication (AUTH exchanges) is not offered.
        return Err(ReasonCode::BAD_AUTHENTICATION_METHOD);
    }

    let credentials = Credentials {
        client_id: client_id.to_string(),
        username: connect.username.as_ref().map(|u| u.to_string()),
        password: connect.password.clone(),
        peer: peer.address,
        certificate_name: peer.certificate_name.clone(),
    };
    let principal = ctx.auth.authenticate(&credentials).await?;
    if let Some(will) = &connect.will {
        if !ctx.auth.authorize_publish(&principal, &will.topic) {
            Metrics::add(&ctx.metrics.publishes_denied, 1);
            return Err(ReasonCode::NOT_AUTHORIZED);
        }
        if let Some(1) = will.properties.payload_format_indicator {
            if std::str::from_utf8(&will.payload).is_err() {
                return Err(ReasonCode::PAYLOAD_FORMAT_INVALID);
            }
        }
    }

    let session_expiry = if v5 {
        connect.properties.session_expiry_interval.unwrap_or(0)
    } else if connect.clean_start {
        0
    } else {
        config.persistent_session_expiry.unwrap_or(u32::MAX)
    };

    // MQTT 5 clients are told the keep alive we want (MQTT-3.2.2-21); 3.1.1 clients cannot be,
    // so their own value is honoured.
    let mut keep_alive = connect.keep_alive;
    if v5 && config.max_keep_alive > 0 && (keep_alive == 0 || keep_alive > config.max_keep_alive) {
        keep_alive = config.max_keep_alive;
        props.server_keep_alive = Some(keep_alive);
    }

    let (reply_tx, reply_rx) = oneshot::channel();
    let request = ConnectRequest {
        client_id: client_id.clone(),
        owner: principal.session_owner(),
        clean_start: connect.clean_start,
        session_expiry,
        reply: reply_tx,
    };
    ctx.router
        .send(Event::Connect(request))
        .await
        .map_err(|_| ReasonCode::SERVER_UNAVAILABLE)?;
    // Dropped when yet another connection took the session over first.
    let reply = reply_rx
        .await
        .map_err(|_| ReasonCode::SESSION_TAKEN_OVER)??;

    if v5 {
        props.receive_maximum = Some(config.receive_maximum);
        props.topic_alias_maximum = Some(config.topic_alias_maximum);
        props.maximum_packet_size = Some(config.max_packet_size);
    }
    let connack = ConnAck {
        session_present: reply.session_present,
        code: ReasonCode::SUCCESS,
        properties: props,
    };
    let accepted = Accepted {
        protocol,
        client_id,
        principal,
        session: reply.session,
        rx: reply.rx,
        resumed: reply.resumed,
        keep_alive,
        will: connect.will.take().map(owned_will),
        session_expiry,
        client_receive_maximum: connect.properties.receive_maximum.unwrap_or(u16::MAX),
        client_max_packet_size: connect.properties.maximum_packet_size.unwrap_or(u32::MAX),
        client_topic_alias_maximum: connect.properties.topic_alias_maximum.unwrap_or(0),
    };
    Ok((accepted, connack))
}
